//! `strake etcd` configuration: etcd's flags and `ETCD_*` environment variables, so an
//! etcd unit file can run strake by swapping the binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// etcd-compatible configuration of one member.
#[derive(Debug, Clone, Parser)]
#[command(name = "strake etcd", about = "Run an etcd-compatible member", version)]
pub struct EtcdConfig {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: "${name}.etcd").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Client URLs advertised to the rest of the cluster.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URLs advertised to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peerURL,...
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ("new" or "existing").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into member and cluster IDs.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Raise the NOSPACE alarm when the backend exceeds this many bytes (0 = 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Largest client request accepted, bytes.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Most operations in one transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Auto compaction mode: "periodic" or "revision".
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention: a duration ("1h", "30m", or hours as a number) in
    /// periodic mode, a revision count in revision mode; "0" disables.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Heartbeat interval, milliseconds.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Election timeout, milliseconds.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Applied entries between snapshots.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 10_000)]
    pub snapshot_count: u64,
    /// Entries kept in the log after a snapshot so slow followers catch up without one.
    #[arg(long, env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// strake only: Raft log bytes after which a snapshot is taken, and the most kept
    /// behind it, besides the entry counts above (a batch entry may hold megabytes);
    /// 0 turns this off.
    #[arg(long, env = "STRAKE_LOG_RETENTION_BYTES", default_value_t = strake_raft::LogRetention::default().bytes)]
    pub log_retention_bytes: u64,
    /// Log level: debug, info, warn, error.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Additional URLs serving /metrics and /health (comma-separated).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Metrics to export: `basic`, or `extensive` (adds grpc_server_handling_seconds).
    #[arg(long, env = "ETCD_METRICS", value_enum, default_value_t = MetricsLevel::Basic)]
    pub metrics: MetricsLevel,
    /// Read every stored block at start and refuse to start on any checksum failure.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false)]
    pub experimental_initial_corrupt_check: bool,
    /// Interval of periodic watch progress notifications.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Logger implementation (accepted for compatibility; strake logs with tracing).
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Log outputs (accepted for compatibility; strake logs to stderr).
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
    /// Accepted for compatibility; strake has no pprof endpoint.
    #[arg(long, env = "ETCD_ENABLE_PPROF", default_value_t = false)]
    pub enable_pprof: bool,
    /// Arm the failpoints named in the FAILPOINTS variable (tests that inject known bugs).
    #[arg(long, hide = true, default_value_t = false)]
    pub experimental_failpoints: bool,
    /// Write logs as JSON lines.
    #[arg(long, env = "STRAKE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// etcd's `--metrics` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsLevel {
    /// Counters and the histograms etcd always exports.
    Basic,
    /// Also the per-RPC handling-time histogram.
    Extensive,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A malformed value.
    #[error("invalid {flag}: {detail}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        detail: String,
    },
}

fn invalid(flag: &'static str, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { flag, detail: detail.into() }
}

/// Parses "10m", "1h", "30s", "500ms" or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    if secs < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Auto-compaction policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Off.
    Disabled,
    /// Keep at least this much history by time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// Splits a comma-separated URL list.
pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// A listen URL as a socket address string ("localhost" resolves to 127.0.0.1).
pub fn listen_addr(url: &str) -> Result<String, ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| invalid("listen URL", format!("{url}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(invalid("listen URL", format!("{url}: only http:// is supported (TLS is not yet implemented)")));
    }
    let host = match parsed.host_str() {
        Some("localhost") | None => "127.0.0.1".to_string(),
        Some(h) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
    };
    let port = parsed.port().ok_or_else(|| invalid("listen URL", format!("{url}: no port")))?;
    Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

impl EtcdConfig {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// The initial cluster as name → peer URLs (default: this member alone).
    pub fn initial_cluster(&self) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
        let text = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, self.initial_advertise_peer_urls));
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| invalid("--initial-cluster", format!("{part:?} is not name=url")))?;
            url::Url::parse(url).map_err(|e| invalid("--initial-cluster", format!("{url}: {e}")))?;
            out.entry(name.to_string()).or_default().push(url.to_string());
        }
        if !out.contains_key(&self.name) {
            return Err(invalid("--initial-cluster", format!("it does not name this member ({:?})", self.name)));
        }
        Ok(out)
    }

    /// Whether this member bootstraps a new cluster.
    pub fn is_new_cluster(&self) -> Result<bool, ConfigError> {
        match self.initial_cluster_state.as_str() {
            "new" => Ok(true),
            "existing" => Ok(false),
            other => Err(invalid("--initial-cluster-state", format!("{other:?} (want new or existing)"))),
        }
    }

    /// The backend quota in bytes (etcd: 0 means the 2 GiB default).
    pub fn quota_bytes(&self) -> i64 {
        const DEFAULT_QUOTA_BYTES: i64 = 2 << 30;
        if self.quota_backend_bytes <= 0 {
            DEFAULT_QUOTA_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// The auto-compaction policy.
    pub fn auto_compaction(&self) -> Result<AutoCompaction, ConfigError> {
        let r = self.auto_compaction_retention.trim();
        if r.is_empty() || r == "0" {
            return Ok(AutoCompaction::Disabled);
        }
        match self.auto_compaction_mode.as_str() {
            "periodic" => {
                let d = match r.parse::<f64>() {
                    Ok(hours) => Duration::from_secs_f64(hours * 3600.0),
                    Err(_) => parse_duration(r).map_err(|e| invalid("--auto-compaction-retention", e))?,
                };
                Ok(if d.is_zero() { AutoCompaction::Disabled } else { AutoCompaction::Periodic(d) })
            }
            "revision" => {
                let n: i64 = r
                    .parse()
                    .map_err(|_| invalid("--auto-compaction-retention", format!("{r:?} is not a revision count")))?;
                Ok(if n <= 0 { AutoCompaction::Disabled } else { AutoCompaction::Revision(n) })
            }
            other => Err(invalid("--auto-compaction-mode", format!("{other:?} (want periodic or revision)"))),
        }
    }

    /// Checks everything that can be checked before starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.initial_cluster()?;
        self.is_new_cluster()?;
        self.auto_compaction()?;
        for u in split_urls(&self.listen_client_urls).iter().chain(&split_urls(&self.listen_peer_urls)) {
            listen_addr(u)?;
        }
        if self.heartbeat_interval == 0 || self.election_timeout < 5 * self.heartbeat_interval {
            return Err(invalid("--election-timeout", "must be at least 5 times --heartbeat-interval"));
        }
        if self.max_txn_ops == 0 {
            return Err(invalid("--max-txn-ops", "must be positive"));
        }
        Ok(())
    }
}

/// etcd's Go flag package accepts `-flag` as well as `--flag`; clap needs `--flag`.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            if a.starts_with('-') && !a.starts_with("--") && a.len() > 2 && a.as_bytes()[1].is_ascii_alphabetic() {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> EtcdConfig {
        let mut v = vec!["strake-etcd".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        EtcdConfig::try_parse_from(normalize_args(v)).unwrap()
    }

    #[test]
    fn defaults_are_etcds() {
        let c = parse(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir(), PathBuf::from("default.etcd"));
        assert_eq!(c.initial_cluster().unwrap()["default"], vec!["http://localhost:2380"]);
        assert_eq!(c.quota_bytes(), 2 << 30);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.auto_compaction().unwrap(), AutoCompaction::Disabled);
        c.validate().unwrap();
    }

    #[test]
    fn single_dash_flags_and_values() {
        let c = parse(&[
            "-name",
            "n1",
            "--initial-cluster",
            "n1=http://127.0.0.1:1,n2=http://127.0.0.1:2",
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention",
            "1000",
        ]);
        assert_eq!(c.name, "n1");
        assert_eq!(c.initial_cluster().unwrap().len(), 2);
        assert_eq!(c.auto_compaction().unwrap(), AutoCompaction::Revision(1000));
        let p = parse(&["--auto-compaction-retention", "1"]);
        assert_eq!(p.auto_compaction().unwrap(), AutoCompaction::Periodic(Duration::from_secs(3600)));
        let p = parse(&["--auto-compaction-retention", "30m"]);
        assert_eq!(p.auto_compaction().unwrap(), AutoCompaction::Periodic(Duration::from_secs(1800)));
    }

    #[test]
    fn bad_values_are_reported() {
        assert!(parse(&["--initial-cluster", "x=http://a:1"]).validate().is_err());
        assert!(parse(&["--initial-cluster-state", "maybe"]).validate().is_err());
        assert_eq!(listen_addr("http://localhost:2379").unwrap(), "127.0.0.1:2379");
        assert!(listen_addr("https://127.0.0.1:1").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
