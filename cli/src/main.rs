//! `strake`: the one multi-call binary.
//!
//! * `strake etcd [etcd flags]`: an etcd-compatible member (flags and ETCD_* variables as etcd).
//! * `strake jepsen ...`: the linearizability harness (see `strake jepsen --help`).

use std::process::ExitCode;

use clap::Parser;
use strake_server::config::normalize_args;
use strake_server::{EtcdConfig, EtcdServer};

/// mimalloc instead of glibc's malloc: under load glibc's per-thread arenas grew and
/// shrank constantly (sysmalloc, mprotect and page faults were ~8% of a put-heavy
/// profile), and its fragmentation inflates RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod huge_pages;

fn init_logging(level: &str, json: bool) {
    // openraft is chatty at info; keep it at warn unless asked for debug.
    let default = match level {
        "debug" => "debug".to_string(),
        l => format!("{l},openraft=warn"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn run_etcd(args: Vec<String>) -> ExitCode {
    let config = match EtcdConfig::try_parse_from(normalize_args(args)) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(&config.log_level, config.log_json);
    huge_pages::disable_transparent_huge_pages();
    if config.experimental_failpoints {
        // Armed for the life of the process.
        std::mem::forget(fail::FailScenario::setup());
        tracing::warn!(failpoints = %std::env::var("FAILPOINTS").unwrap_or_default(), "failpoints armed: this member injects bugs");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let server = match EtcdServer::start(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("strake etcd: {e}");
                return ExitCode::from(1);
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.stop().await;
        ExitCode::SUCCESS
    })
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: strake <command> [args]\n\ncommands:\n  etcd     run an etcd-compatible member (etcd's flags)\n  bench    load generator and strake-vs-etcd comparison\n  jepsen   linearizability harness\n  version  print the version"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        return usage();
    }
    let command = args.remove(1);
    match command.as_str() {
        "etcd" => run_etcd(args),
        "jepsen" => strake_jepsen::cli::main(args.into_iter().skip(1).collect()),
        "bench" => strake_bench::cli::main(args.into_iter().skip(1).collect()),
        "version" | "--version" => {
            println!("strake {} (etcd API {})", env!("CARGO_PKG_VERSION"), strake_server::context::ETCD_VERSION);
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}
