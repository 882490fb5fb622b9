//! Test fixtures: real `strake etcd` processes on 127.0.0.1 with free ports, stopped
//! by PID, and the real `etcdctl` (Debian's etcd-client) to drive them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use strake_jepsen::cluster::free_port;

/// One running `strake etcd` member.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// When set, the member advertises this port (a proxy) as its peer URL.
    pub advertised_peer_port: Option<u16>,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    /// Extra environment variables of the process (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    pub initial_cluster: String,
    pub state: String,
    child: Option<Child>,
    log: PathBuf,
}

/// The strake binary under test.
pub fn strake_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strake"))
}

impl Member {
    /// A single-member cluster in `dir`, not started yet.
    pub fn single(dir: &Path, extra_args: &[&str]) -> Member {
        std::fs::create_dir_all(dir).expect("member directory");
        let peer_port = free_port();
        let name = "m1".to_string();
        Member {
            initial_cluster: format!("{name}=http://127.0.0.1:{peer_port}"),
            name,
            client_port: free_port(),
            peer_port,
            advertised_peer_port: None,
            data_dir: dir.join("data"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            state: "new".into(),
            child: None,
            log: dir.join("member.log"),
        }
    }

    /// The client endpoint, host:port.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client URL.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL other members use (a proxy's, when one is in front).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.advertised_peer_port.unwrap_or(self.peer_port))
    }

    /// The peer URL this member listens on.
    pub fn listen_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(strake_bin());
        cmd.arg("etcd")
            .args(["--name", &self.name])
            .args(["--data-dir", self.data_dir.to_str().expect("utf-8 path")])
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.listen_peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", &self.state])
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Starts the process (does not wait for readiness).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = self
            .command()
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strake");
        self.child = Some(child);
    }

    /// Starts the process and waits until it serves a linearizable read.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_ready(Duration::from_secs(30));
    }

    /// Waits until /health answers 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("strake exited early with {status}; log:\n{}", self.log_text());
            }
            if http_get(self.client_port, "/health").is_some_and(|(code, _)| code == 200) {
                return;
            }
            if Instant::now() > deadline {
                panic!("strake did not become healthy; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the process to completion (for start-up failures); returns its output.
    pub fn run_to_exit(&self, timeout: Duration) -> Output {
        let mut child = self.command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!("strake kept running; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY-free: libc::kill with a valid pid of our child.
            signal(c.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().expect("try_wait").is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }

    /// The member's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `etcdctl` against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&[self.endpoint()], args)
    }

    /// `etcdctl` that must succeed; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Sends SIGSTOP / SIGCONT.
pub fn pause(pid: u32, paused: bool) {
    signal(pid, if paused { libc::SIGSTOP } else { libc::SIGCONT });
}

/// Runs etcdctl (API v3) against `endpoints`.
pub fn etcdctl(endpoints: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--command-timeout=15s")
        .args(args)
        .output()
        .expect("etcdctl is installed (Debian package etcd-client)")
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:port; returns (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().ok()?, Duration::from_secs(1))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// A tokio runtime for gRPC clients in synchronous tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A gRPC channel to a member.
pub async fn channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// `etcdctl` with `input` on stdin (for `txn`); returns the output.
pub fn etcdctl_stdin(endpoint: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("etcdctl output")
}

/// Parses etcdctl `-w json` output.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Decodes a base64 field of etcdctl's JSON output.
pub fn b64(v: &serde_json::Value) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = v.as_str().expect("base64 string");
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let val = ALPHABET.iter().position(|a| *a == c).expect("base64 digit") as u32;
        acc = (acc << 6) | val;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Several members of one cluster on 127.0.0.1.
pub struct Cluster {
    pub members: Vec<Member>,
    pub dir: PathBuf,
}

impl Cluster {
    /// `n` members bootstrapping a new cluster in `dir` (not started yet).
    pub fn new(dir: &Path, n: usize, extra_args: &[&str]) -> Cluster {
        let mut members: Vec<Member> = (0..n)
            .map(|i| {
                let sub = dir.join(format!("m{}", i + 1));
                std::fs::create_dir_all(&sub).unwrap();
                let mut m = Member::single(&sub, extra_args);
                m.name = format!("m{}", i + 1);
                m
            })
            .collect();
        let initial: Vec<String> = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
        for m in &mut members {
            m.initial_cluster = initial.join(",");
        }
        Cluster { members, dir: dir.to_path_buf() }
    }

    /// Starts every member and waits until each is healthy.
    pub fn start(&mut self) {
        for m in &mut self.members {
            m.spawn();
        }
        for m in &mut self.members {
            m.wait_ready(Duration::from_secs(60));
        }
    }

    /// Every client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    /// etcdctl against every member that is running.
    pub fn ctl(&self, args: &[&str]) -> String {
        let eps: Vec<String> = self.members.iter().filter(|m| m.is_running()).map(|m| m.endpoint()).collect();
        let out = etcdctl(&eps, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// The index of the member every running member agrees leads, waiting up to `timeout`.
    pub fn leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = std::collections::BTreeSet::new();
            let mut ids = std::collections::HashMap::new();
            let mut all = true;
            for (i, m) in self.members.iter().enumerate().filter(|(_, m)| m.is_running()) {
                match m.status() {
                    Some(s) => {
                        leaders.insert(s["leader"].as_u64().unwrap_or(0));
                        ids.insert(s["header"]["member_id"].as_u64().unwrap_or(0), i);
                    }
                    None => all = false,
                }
            }
            if all && leaders.len() == 1 {
                let l = *leaders.iter().next().unwrap();
                if let Some(i) = ids.get(&l) {
                    return *i;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader; statuses: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Member {
    /// Whether the process was started and not stopped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `endpoint status` of this member as JSON (`Status` object), if it answers.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json", "--command-timeout=2s"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v[0]["Status"].clone())
    }

    /// The member ID as etcdctl prints it (hex).
    pub fn id_hex(&self) -> String {
        format!("{:x}", self.status().expect("status")["header"]["member_id"].as_u64().unwrap())
    }

    /// HashKV at `rev` as this member computes it.
    pub fn hash_kv(&self, rev: i64) -> u64 {
        let out = self.ctl(&["endpoint", "hashkv", "--rev", &rev.to_string(), "-w", "json"]);
        json(&out)[0]["HashKV"]["hash"].as_u64().unwrap()
    }

    /// [`Member::hash_kv`], or `None` while the member has not applied `rev` yet (etcd
    /// refuses a future revision) or cannot answer.
    pub fn try_hash_kv(&self, rev: i64) -> Option<u64> {
        let out = self.etcdctl(&["endpoint", "hashkv", "--rev", &rev.to_string(), "-w", "json"]);
        if !out.status.success() {
            return None;
        }
        json(&String::from_utf8_lossy(&out.stdout))[0]["HashKV"]["hash"].as_u64()
    }
}

/// A cluster whose peer links go through fault-injecting proxies.
pub struct ProxiedCluster {
    pub cluster: Cluster,
    pub links: std::sync::Arc<strake_jepsen::net::proxy::LinkTable>,
    _rt: tokio::runtime::Runtime,
}

impl ProxiedCluster {
    /// `n` members; each advertises a proxy in front of its real peer port.
    pub fn new(dir: &Path, n: usize, extra_args: &[&str]) -> ProxiedCluster {
        let mut cluster = Cluster::new(dir, n, extra_args);
        let rt = runtime();
        let links = std::sync::Arc::new(strake_jepsen::net::proxy::LinkTable::default());
        for (i, m) in cluster.members.iter_mut().enumerate() {
            let target: std::net::SocketAddr = format!("127.0.0.1:{}", m.peer_port).parse().unwrap();
            let proxy = rt
                .block_on(strake_jepsen::net::proxy::LinkProxy::start(
                    "127.0.0.1:0".parse().unwrap(),
                    target,
                    i,
                    links.clone(),
                ))
                .expect("proxy");
            m.advertised_peer_port = Some(proxy.listen.port());
        }
        let initial: Vec<String> = cluster.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
        for m in &mut cluster.members {
            m.initial_cluster = initial.join(",");
        }
        ProxiedCluster { cluster, links, _rt: rt }
    }

    /// Starts every member and registers its process with the link table.
    pub fn start(&mut self) {
        self.cluster.start();
        self.register();
    }

    /// Tells the proxies which process is which member (after any restart).
    pub fn register(&self) {
        for (i, m) in self.cluster.members.iter().enumerate() {
            if m.is_running() {
                self.links.set_pid(m.pid(), i);
            }
        }
    }
}

/// What etcdctl tests need of a deployment: its endpoints and members.
pub struct Target {
    /// Client endpoints (host:port).
    pub endpoints: Vec<String>,
    /// (name, peer URL, client URL) of each member.
    pub members: Vec<(String, String, String)>,
}

impl Target {
    /// All endpoints, comma-separated.
    pub fn endpoint(&self) -> String {
        self.endpoints.join(",")
    }

    /// etcdctl against every endpoint.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoints, args)
    }

    /// etcdctl that must succeed; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

impl Member {
    /// This member as a test target.
    pub fn target(&self) -> Target {
        Target {
            endpoints: vec![self.endpoint()],
            members: vec![(self.name.clone(), self.peer_url(), self.client_url())],
        }
    }
}

impl Cluster {
    /// The whole cluster as a test target.
    pub fn target(&self) -> Target {
        Target {
            endpoints: self.endpoints(),
            members: self.members.iter().map(|m| (m.name.clone(), m.peer_url(), m.client_url())).collect(),
        }
    }
}

/// The value of the sample `name` (without labels) in a Prometheus exposition.
pub fn metric_value(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}"))
}
