//! The `strake bench` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::{self, Summary};
use crate::runner::{self, RunOptions};
use crate::workload::{KeySpec, Workload};

/// Benchmarks for etcd v3 endpoints.
#[derive(Debug, Parser)]
#[command(name = "strake bench", about = "Load generator for any etcd v3 endpoint, and strake-vs-etcd comparisons")]
pub struct BenchCli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one workload against running endpoints.
    Run(RunArgs),
    /// Start strake and real etcd (1 and 3 members) and compare them on the same suite.
    Compare(crate::compare::CompareArgs),
    /// Load a large dataset (default 10M keys × 2 KiB), read it, overwrite part of it
    /// and compact it, while probes time single requests to find stalls.
    Dataset(crate::dataset::DatasetArgs),
}

/// Options of one run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Comma-separated endpoints.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Concurrent clients (watchers, for watch workloads).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// gRPC connections.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Stop after this many operations.
    #[arg(long)]
    pub total: Option<u64>,
    /// Stop after this long (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// Operations per second (all clients together; the writer's rate for watch workloads).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Label for the target in the report.
    #[arg(long, default_value = "target")]
    pub target: String,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses "10s", "500ms", "2m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl RunArgs {
    /// The runner's options.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            endpoints: self.endpoints.clone(),
            clients: self.clients,
            conns: self.conns,
            total: self.total,
            duration: self.duration,
            keys: KeySpec { key_size: self.key_size, val_size: self.val_size, key_space: self.key_space },
            rate: self.rate,
            target: self.target.clone(),
            progress: !self.quiet,
        }
    }
}

fn print_summary(s: &Summary, json: Option<&PathBuf>) -> anyhow::Result<()> {
    print!("{}", report::table(std::slice::from_ref(s)));
    for (e, n) in &s.errors {
        println!("  error x{n}: {e}");
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(s)?)?;
    }
    Ok(())
}

/// Entry point: `args` excludes the program name and "bench". Exit code 0 on success,
/// 1 when the run had errors, 2 on a usage or harness error.
pub fn main(args: Vec<String>) -> std::process::ExitCode {
    let cli = match BenchCli::try_parse_from(std::iter::once("strake bench".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result: anyhow::Result<bool> = rt.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                let summary = runner::run(args.workload, &args.options()).await?;
                print_summary(&summary, args.json.as_ref())?;
                Ok(summary.error_count() == 0)
            }
            Command::Compare(args) => crate::compare::run(args).await,
            Command::Dataset(args) => crate::dataset::run(args).await,
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("strake bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
