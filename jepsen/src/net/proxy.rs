//! A fault-injecting TCP proxy for peer links, usable with any etcd-v3 server.
//!
//! Each member's advertised peer URL points at a [`LinkProxy`] that forwards to the
//! member's real peer port. A connection's *source* member is found by asking the
//! kernel which process owns the client end of the connection (`/proc/net/tcp` and
//! `/proc/<pid>/fd`), so links can be cut per direction without root and without
//! the servers' cooperation. A cut link blackholes: new connections are accepted and
//! then hang without forwarding; established connections are closed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which directed links are cut, and which process is which member.
#[derive(Debug)]
pub struct LinkTable {
    blocked: RwLock<HashSet<(usize, usize)>>,
    pids: RwLock<HashMap<u32, usize>>,
    epoch: watch::Sender<u64>,
}

impl Default for LinkTable {
    fn default() -> Self {
        LinkTable { blocked: Default::default(), pids: Default::default(), epoch: watch::channel(0).0 }
    }
}

impl LinkTable {
    /// Records that process `pid` is member `member`.
    pub fn set_pid(&self, pid: u32, member: usize) {
        let mut pids = self.pids.write();
        pids.retain(|_, m| *m != member);
        pids.insert(pid, member);
    }

    /// Cuts exactly the given directed links (and heals every other one).
    pub fn set_blocked(&self, links: HashSet<(usize, usize)>) {
        *self.blocked.write() = links;
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.set_blocked(HashSet::new());
    }

    /// Cuts every link between the two groups, both directions.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let mut links = HashSet::new();
        for &x in a {
            for &y in b {
                links.insert((x, y));
                links.insert((y, x));
            }
        }
        self.set_blocked(links);
    }

    /// Whether traffic from `src` to `dst` is cut.
    pub fn is_blocked(&self, src: Option<usize>, dst: usize) -> bool {
        src.is_some_and(|s| self.blocked.read().contains(&(s, dst)))
    }

    fn member_of(&self, peer: SocketAddr, local: SocketAddr) -> Option<usize> {
        let inode = socket_inode(peer, local)?;
        let pids: Vec<(u32, usize)> = self.pids.read().iter().map(|(p, m)| (*p, *m)).collect();
        pids.into_iter().find(|(pid, _)| process_owns_socket(*pid, inode)).map(|(_, m)| m)
    }
}

/// The inode of the socket whose local end is `client` and remote end is `server`.
fn socket_inode(client: SocketAddr, server: SocketAddr) -> Option<u64> {
    let enc = |a: SocketAddr| -> Option<String> {
        match a {
            SocketAddr::V4(v4) => {
                let o = v4.ip().octets();
                Some(format!("{:02X}{:02X}{:02X}{:02X}:{:04X}", o[3], o[2], o[1], o[0], v4.port()))
            }
            SocketAddr::V6(_) => None,
        }
    };
    let (want_local, want_remote) = (enc(client)?, enc(server)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == want_local && f[2] == want_remote).then(|| f[9].parse().ok()).flatten()
    })
}

fn process_owns_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == want))
}

/// A proxy in front of one member's peer port.
#[derive(Debug)]
pub struct LinkProxy {
    /// Where peers connect.
    pub listen: SocketAddr,
}

impl LinkProxy {
    /// Listens on `listen` (port 0 picks one) and forwards to `target`, the peer port of
    /// member `dst`, obeying `table`.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        dst: usize,
        table: Arc<LinkTable>,
    ) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((client, peer)) = listener.accept().await {
                let table = table.clone();
                tokio::spawn(async move {
                    serve(client, peer, listen, target, dst, table).await;
                });
            }
        });
        Ok(LinkProxy { listen })
    }
}

/// Forwards one connection, re-checking the link whenever the table changes. The
/// source member is resolved again while unknown (the connection may predate the
/// registration of the process).
async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    target: SocketAddr,
    dst: usize,
    table: Arc<LinkTable>,
) {
    let mut epoch = table.epoch.subscribe();
    let mut src = table.member_of(peer, listen);
    // A cut link: hold the connection open, forward nothing, close once healed.
    while table.is_blocked(src, dst) {
        if epoch.changed().await.is_err() {
            return;
        }
        if !table.is_blocked(src, dst) {
            let _ = client.shutdown().await;
            return;
        }
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            changed = epoch.changed() => {
                if changed.is_err() {
                    return;
                }
                if src.is_none() {
                    src = table.member_of(peer, listen);
                }
                if table.is_blocked(src, dst) {
                    return;
                }
            }
        }
    }
}
