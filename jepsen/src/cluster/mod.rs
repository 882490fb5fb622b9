//! Cluster control: start, stop, kill -9, pause, restart and wipe the members of a
//! local etcd-v3 cluster — strake or real etcd, described the same way.
//!
//! Both servers take etcd's flags, so one launcher serves both: a [`TargetSpec`]
//! names the binary, the arguments that come before the flags (`["etcd"]` for
//! strake), and the member count. Members listen on 127.0.0.1 with free ports; with
//! `proxied`, every member advertises a [`crate::net::proxy::LinkProxy`] in front of
//! its peer port so peer links can be cut.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::proxy::{LinkProxy, LinkTable};

/// Which server a target runs (for labels; both take etcd's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// `strake etcd`.
    Strake,
    /// A real etcd server.
    Etcd,
}

/// How to run a cluster: a small JSON file can hold one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetSpec {
    /// A label for reports.
    pub name: String,
    /// Which server.
    pub flavor: Flavor,
    /// The server binary.
    pub binary: PathBuf,
    /// Arguments before etcd's flags (`["etcd"]` for strake).
    #[serde(default)]
    pub prefix_args: Vec<String>,
    /// Extra etcd flags for every member.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Number of members.
    pub members: usize,
    /// Put a fault-injecting proxy on every peer link.
    #[serde(default)]
    pub proxied: bool,
    /// Environment variables for every member (e.g. FAILPOINTS).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

impl TargetSpec {
    /// strake with the given binary.
    pub fn strake(binary: PathBuf, members: usize) -> TargetSpec {
        TargetSpec {
            name: "strake".into(),
            flavor: Flavor::Strake,
            binary,
            prefix_args: vec!["etcd".into()],
            extra_args: vec![],
            members,
            proxied: false,
            env: Default::default(),
        }
    }

    /// Real etcd with the given binary.
    pub fn etcd(binary: PathBuf, members: usize) -> TargetSpec {
        TargetSpec {
            name: "etcd".into(),
            flavor: Flavor::Etcd,
            binary,
            prefix_args: vec![],
            extra_args: vec![],
            members,
            proxied: false,
            env: Default::default(),
        }
    }

    /// Reads a spec from a JSON file.
    pub fn from_file(path: &Path) -> anyhow::Result<TargetSpec> {
        let text = std::fs::read_to_string(path)?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// A free TCP port on 127.0.0.1 that this process has not handed out before.
///
/// Ports are drawn at random below the kernel's ephemeral range (32768 and up), so
/// neither outgoing connections nor other processes' `bind(0)` can take one between
/// this check and the server binding it, and a port released by one member is never
/// given to another member of the same test (`bind(0)` happily returns it again, which
/// once pointed a test's etcdctl at another member's peer listener).
pub fn free_port() -> u16 {
    use rand::Rng;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(12_000..32_000);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

/// Hands out distinct free ports, holding each one bound until [`Ports::release`], so
/// neither later allocations nor other listeners in this process can take them.
#[derive(Default)]
pub struct Ports {
    held: Vec<TcpListener>,
}

impl Ports {
    /// A port no one else holds.
    pub fn take(&mut self) -> std::io::Result<u16> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        self.held.push(l);
        Ok(port)
    }

    /// Frees the ports for the servers about to bind them.
    pub fn release(self) {}
}

/// One member of a local cluster.
#[derive(Debug)]
pub struct Node {
    /// Member name (n1, n2, ...).
    pub name: String,
    /// Client port.
    pub client_port: u16,
    /// Real peer port.
    pub peer_port: u16,
    /// Advertised peer port (a proxy's when proxied).
    pub advertised_peer_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log file.
    pub log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// host:port for clients.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The peer URL other members use for it.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.advertised_peer_port)
    }

    /// The process ID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process runs (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

/// A local cluster of real server processes.
pub struct LocalCluster {
    /// How it runs.
    pub spec: TargetSpec,
    /// The members.
    pub nodes: Vec<Node>,
    /// Peer-link control when proxied.
    pub links: Option<Arc<LinkTable>>,
    initial_cluster: String,
    token: String,
    _proxies: Vec<LinkProxy>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster").field("spec", &self.spec).field("nodes", &self.nodes).finish()
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

impl LocalCluster {
    /// Lays out (but does not start) a cluster under `dir`. Proxies need a tokio runtime.
    pub async fn create(spec: TargetSpec, dir: &Path) -> anyhow::Result<LocalCluster> {
        let links = spec.proxied.then(|| Arc::new(LinkTable::default()));
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        let mut ports = Ports::default();
        for i in 0..spec.members {
            let name = format!("n{}", i + 1);
            let node_dir = dir.join(&name);
            std::fs::create_dir_all(&node_dir)?;
            let peer_port = ports.take()?;
            let advertised_peer_port = match &links {
                Some(table) => {
                    let target = format!("127.0.0.1:{peer_port}").parse()?;
                    let proxy = LinkProxy::start("127.0.0.1:0".parse()?, target, i, table.clone()).await?;
                    let port = proxy.listen.port();
                    proxies.push(proxy);
                    port
                }
                None => peer_port,
            };
            nodes.push(Node {
                name,
                client_port: ports.take()?,
                peer_port,
                advertised_peer_port,
                data_dir: node_dir.join("data"),
                log: node_dir.join("server.log"),
                child: None,
                paused: false,
            });
        }
        let initial_cluster =
            nodes.iter().map(|n| format!("{}={}", n.name, n.peer_url())).collect::<Vec<_>>().join(",");
        ports.release();
        let token = format!("strake-jepsen-{}", std::process::id());
        Ok(LocalCluster { spec, nodes, links, initial_cluster, token, _proxies: proxies })
    }

    /// Every client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::endpoint).collect()
    }

    fn command(&self, i: usize, state: &str) -> Command {
        let n = &self.nodes[i];
        let mut cmd = Command::new(&self.spec.binary);
        cmd.args(&self.spec.prefix_args)
            .arg(format!("--name={}", n.name))
            .arg(format!("--data-dir={}", n.data_dir.display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{}", n.client_port))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", n.client_port))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", n.peer_port))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", n.advertised_peer_port))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            .args(&self.spec.extra_args)
            .envs(&self.spec.env);
        cmd
    }

    /// Starts member `i` (no-op when running).
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.start_node_as(i, "new")
    }

    /// Starts member `i` with `--initial-cluster-state=state` ("existing" for a
    /// member just added with MemberAdd and an empty data directory).
    pub fn start_node_as(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        if self.nodes[i].child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.nodes[i].log)?;
        let child = self
            .command(i, state)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", self.spec.binary.display()))?;
        if let Some(t) = &self.links {
            t.set_pid(child.id(), i);
        }
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Starts every member and waits until each answers /health.
    pub async fn start(&mut self, timeout: Duration) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        for i in 0..self.nodes.len() {
            self.wait_healthy(i, timeout).await?;
        }
        Ok(())
    }

    /// Waits until member `i` answers /health with 200.
    pub async fn wait_healthy(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.nodes[i].child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.nodes[i].child = None;
                    anyhow::bail!("{} exited with {status}; see {}", self.nodes[i].name, self.nodes[i].log.display());
                }
            }
            if http_status(self.nodes[i].client_port, "/health").await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} is not healthy after {timeout:?}; see {}",
                    self.nodes[i].name,
                    self.nodes[i].log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// SIGTERM member `i` and wait for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            if self.nodes[i].paused {
                signal(c.id(), "CONT");
            }
            signal(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) member `i`.
    pub fn pause(&mut self, i: usize, paused: bool) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, if paused { "STOP" } else { "CONT" });
            self.nodes[i].paused = paused;
        }
    }

    /// Deletes member `i`'s data (it must be stopped).
    pub fn wipe(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[i].child.is_none(), "wipe a running member");
        if self.nodes[i].data_dir.exists() {
            std::fs::remove_dir_all(&self.nodes[i].data_dir)?;
        }
        Ok(())
    }

    /// Member `i`'s process ID while it runs.
    pub fn member_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].pid()
    }

    /// Peak resident memory of member `i` in KiB (VmHWM).
    pub fn peak_rss_kib(&self, i: usize) -> Option<u64> {
        let pid = self.member_pid(i)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Bytes under member `i`'s data directory.
    pub fn data_bytes(&self, i: usize) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| match e.metadata() {
                            Ok(m) if m.is_dir() => walk(&e.path()),
                            Ok(m) => m.len(),
                            Err(_) => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.nodes[i].data_dir)
    }

    /// Stops every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.pause(i, false);
            }
            self.kill(i);
        }
    }
}

/// The HTTP status of GET `path` on 127.0.0.1:`port`, if it answers.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let mut s = tokio::time::timeout(Duration::from_secs(1), connect).await.ok()?.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}
