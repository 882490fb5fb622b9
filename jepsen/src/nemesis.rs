//! Nemeses: faults injected from outside the servers, each undone by a heal.

use std::collections::HashSet;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use strake_proto::etcdserverpb::cluster_client::ClusterClient;
use strake_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use strake_proto::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberRemoveRequest, StatusRequest};
use tonic::transport::Channel;

use crate::cluster::LocalCluster;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 a random member, restart it at heal.
    Kill,
    /// kill -9 the leader.
    KillLeader,
    /// kill -9 a majority.
    KillMajority,
    /// SIGSTOP a random member, SIGCONT at heal.
    Pause,
    /// SIGSTOP the leader.
    PauseLeader,
    /// Cut the cluster into two random halves.
    Partition,
    /// Cut the leader off from everyone.
    PartitionLeader,
    /// Each member talks only to its ring neighbours (majorities that overlap).
    Ring,
    /// Two halves joined by one bridge member.
    Bridge,
    /// Remove a random member (MemberRemove), stop it and wipe its data; at heal add
    /// it back (MemberAdd) and start it empty with --initial-cluster-state=existing.
    Membership,
}

impl Fault {
    /// Whether the fault needs peer-link proxies.
    pub fn needs_proxy(&self) -> bool {
        matches!(self, Fault::Partition | Fault::PartitionLeader | Fault::Ring | Fault::Bridge)
    }
}

/// What an active fault did, so it can be undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// Members killed.
    Killed(Vec<usize>),
    /// Members paused.
    Paused(Vec<usize>),
    /// Directed links cut.
    Cut(Vec<(usize, usize)>),
    /// A member removed from the cluster, stopped and wiped.
    Removed(usize),
}

/// The member every reachable member names as leader, if they agree.
pub async fn leader(cluster: &LocalCluster) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leaders = HashSet::new();
    for (i, n) in cluster.nodes.iter().enumerate() {
        if !n.is_running() || n.is_paused() {
            continue;
        }
        let Some(ch) = admin_channel(cluster, i, Duration::from_secs(1)).await else {
            continue;
        };
        if let Ok(s) = MaintenanceClient::new(ch).status(StatusRequest {}).await {
            let s = s.into_inner();
            ids.push((s.header.map_or(0, |h| h.member_id), i));
            if s.leader != 0 {
                leaders.insert(s.leader);
            }
        }
    }
    let l = *leaders.iter().next()?;
    ids.into_iter().find(|(id, _)| *id == l).map(|(_, i)| i)
}

/// A connected channel to member `i` for administrative calls.
async fn admin_channel(cluster: &LocalCluster, i: usize, timeout: Duration) -> Option<Channel> {
    let url = format!("http://{}", cluster.nodes[i].endpoint());
    tonic::transport::Endpoint::from_shared(url)
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .connect()
        .await
        .ok()
}

/// Asks a running member other than `i` to remove member `i`; true when it did.
async fn remove_member(cluster: &LocalCluster, i: usize) -> bool {
    for j in (0..cluster.nodes.len()).filter(|j| *j != i && cluster.nodes[*j].is_running()) {
        let Some(ch) = admin_channel(cluster, j, Duration::from_secs(5)).await else { continue };
        let mut c = ClusterClient::new(ch);
        let Ok(list) = c.member_list(MemberListRequest { linearizable: true }).await else { continue };
        let Some(id) = list
            .into_inner()
            .members
            .iter()
            .find(|m| m.peer_ur_ls.contains(&cluster.nodes[i].peer_url()))
            .map(|m| m.id)
        else {
            return false;
        };
        if c.member_remove(MemberRemoveRequest { id }).await.is_ok() {
            return true;
        }
    }
    false
}

/// Adds member `i` back (as a voter) through any running member; true when added.
async fn add_member(cluster: &LocalCluster, i: usize) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        for j in (0..cluster.nodes.len()).filter(|j| *j != i && cluster.nodes[*j].is_running()) {
            let Some(ch) = admin_channel(cluster, j, Duration::from_secs(5)).await else { continue };
            let req = MemberAddRequest { peer_ur_ls: vec![cluster.nodes[i].peer_url()], is_learner: false };
            if ClusterClient::new(ch).member_add(req).await.is_ok() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Injects `fault`; returns what to undo, and a description.
pub async fn inject(cluster: &mut LocalCluster, fault: Fault) -> Option<(Applied, String)> {
    let n = cluster.nodes.len();
    // A Send generator: the choice spans awaits.
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let random = rng.random_range(0..n);
    let running: Vec<usize> = (0..n).filter(|i| cluster.nodes[*i].is_running()).collect();
    match fault {
        Fault::Kill | Fault::KillLeader => {
            let i = if fault == Fault::Kill { random } else { leader(cluster).await? };
            cluster.kill(i);
            Some((Applied::Killed(vec![i]), format!("kill {}", cluster.nodes[i].name)))
        }
        Fault::KillMajority => {
            let mut v = running.clone();
            v.shuffle(&mut rng);
            v.truncate(n / 2 + 1);
            for &i in &v {
                cluster.kill(i);
            }
            Some((Applied::Killed(v.clone()), format!("kill {:?}", v)))
        }
        Fault::Pause | Fault::PauseLeader => {
            let i = if fault == Fault::Pause { random } else { leader(cluster).await? };
            cluster.pause(i, true);
            Some((Applied::Paused(vec![i]), format!("pause {}", cluster.nodes[i].name)))
        }
        Fault::Partition | Fault::PartitionLeader | Fault::Ring | Fault::Bridge => {
            let links = cluster.links.clone()?;
            let mut cut: Vec<(usize, usize)> = Vec::new();
            let mut both = |a: usize, b: usize| {
                cut.push((a, b));
                cut.push((b, a));
            };
            let desc = match fault {
                Fault::Partition => {
                    let mut v: Vec<usize> = (0..n).collect();
                    v.shuffle(&mut rng);
                    let (a, b) = v.split_at(n / 2);
                    for &x in a {
                        for &y in b {
                            both(x, y);
                        }
                    }
                    format!("partition {a:?} | {b:?}")
                }
                Fault::PartitionLeader => {
                    let l = leader(cluster).await?;
                    for y in (0..n).filter(|y| *y != l) {
                        both(l, y);
                    }
                    format!("isolate leader {}", cluster.nodes[l].name)
                }
                Fault::Ring => {
                    for x in 0..n {
                        for y in (x + 1)..n {
                            let d = (y - x).min(n - (y - x));
                            if d > 1 {
                                both(x, y);
                            }
                        }
                    }
                    "ring".to_string()
                }
                _ => {
                    let mut v: Vec<usize> = (0..n).collect();
                    v.shuffle(&mut rng);
                    let bridge = v[0];
                    let (a, b) = v[1..].split_at((n - 1) / 2);
                    for &x in a {
                        for &y in b {
                            both(x, y);
                        }
                    }
                    format!("bridge {} between {a:?} and {b:?}", cluster.nodes[bridge].name)
                }
            };
            links.set_blocked(cut.iter().copied().collect());
            Some((Applied::Cut(cut), desc))
        }
        Fault::Membership => {
            if running.len() < n || !remove_member(cluster, random).await {
                return None;
            }
            cluster.stop(random);
            if let Err(e) = cluster.wipe(random) {
                tracing::warn!(error = %e, "cannot wipe a removed member");
            }
            Some((Applied::Removed(random), format!("remove {}", cluster.nodes[random].name)))
        }
    }
}

/// Undoes a fault: restarts killed members, resumes paused ones, heals links.
pub async fn heal(cluster: &mut LocalCluster, applied: &Applied) {
    match applied {
        Applied::Killed(v) => {
            for &i in v {
                if let Err(e) = cluster.start_node(i) {
                    tracing::warn!(error = %e, "cannot restart a member");
                }
            }
        }
        Applied::Paused(v) => {
            for &i in v {
                cluster.pause(i, false);
            }
        }
        Applied::Cut(_) => {
            if let Some(l) = &cluster.links {
                l.heal();
            }
        }
        Applied::Removed(i) => {
            if !add_member(cluster, *i).await {
                tracing::warn!(member = %cluster.nodes[*i].name, "cannot add a removed member back");
                return;
            }
            if let Err(e) = cluster.start_node_as(*i, "existing") {
                tracing::warn!(error = %e, "cannot start a re-added member");
            }
        }
    }
}
