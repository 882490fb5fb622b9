//! Starting a member: data directory and identity, store, Raft, the client and peer
//! listeners, background tasks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strake_proto::etcdserverpb::auth_server::AuthServer;
use strake_proto::etcdserverpb::cluster_server::ClusterServer;
use strake_proto::etcdserverpb::kv_server::KvServer;
use strake_proto::etcdserverpb::lease_server::LeaseServer;
use strake_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use strake_proto::etcdserverpb::watch_server::WatchServer;
use strake_proto::v3electionpb::election_server::ElectionServer;
use strake_proto::v3lockpb::lock_server::LockServer;
use strake_raft::transport::service::PeerService;
use strake_raft::{MemberNode, NodeConfig, RaftNode};
use strake_store::{EngineOptions, Store};
use tokio::net::TcpListener;

use crate::config::{listen_addr, split_urls, EtcdConfig, MetricsLevel};
use crate::context::{Identity, Limits, Server, ETCD_VERSION};
use crate::metrics::Metrics;
use crate::{auth, cluster, election, http, ids, kv, lease, lock, maintenance, serve, watch};

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Bad flags.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory is unusable.
    #[error("{0}")]
    DataDir(String),
    /// The store refused to open.
    #[error(transparent)]
    Store(#[from] strake_store::StoreError),
    /// Raft refused to start.
    #[error(transparent)]
    Raft(#[from] strake_raft::StartError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a member remembers about itself across restarts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct IdentityFile {
    member_id: u64,
    cluster_id: u64,
}

const IDENTITY_FILE: &str = "identity.json";

async fn load_or_create_identity(config: &EtcdConfig, member_dir: &Path) -> Result<(IdentityFile, bool), EtcdError> {
    let path = member_dir.join(IDENTITY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id: IdentityFile = serde_json::from_str(&text)
            .map_err(|e| EtcdError::DataDir(format!("{} is damaged: {e}", path.display())))?;
        return Ok((id, false));
    }
    let identity = if config.is_new_cluster()? {
        let cluster = config.initial_cluster()?;
        let token = &config.initial_cluster_token;
        let ids: Vec<u64> = cluster.values().map(|urls| ids::member_id(urls, token, None)).collect();
        let own = ids::member_id(&cluster[&config.name], token, None);
        IdentityFile { member_id: own, cluster_id: ids::cluster_id(&ids) }
    } else {
        discover_identity(config).await?
    };
    std::fs::create_dir_all(member_dir)
        .map_err(|e| EtcdError::DataDir(format!("cannot create {}: {e}", member_dir.display())))?;
    let tmp = member_dir.join("identity.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&identity).expect("serialise"))
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| EtcdError::DataDir(format!("cannot write {}: {e}", path.display())))?;
    Ok((identity, true))
}

/// How long a joining member keeps asking the existing members who it is.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A member joining an existing cluster (after `member add`) learns its ID and the
/// cluster's ID from the members named in --initial-cluster, matching its peer URLs.
async fn discover_identity(config: &EtcdConfig) -> Result<IdentityFile, EtcdError> {
    let own_urls = split_urls(&config.initial_advertise_peer_urls);
    let peers = strake_raft::transport::client::PeerClients::default();
    let others: Vec<MemberNode> = config
        .initial_cluster()?
        .into_iter()
        .filter(|(name, _)| *name != config.name)
        .map(|(name, urls)| MemberNode { name, peer_urls: urls, client_urls: vec![] })
        .collect();
    let deadline = tokio::time::Instant::now() + DISCOVERY_TIMEOUT;
    let mut last_error = String::from("no other member is listed in --initial-cluster");
    loop {
        for node in &others {
            match peers.member_info(node, Duration::from_secs(2)).await {
                Ok(info) => {
                    let view: strake_raft::MembershipView = serde_json::from_slice(&info.membership_json)
                        .map_err(|e| EtcdError::DataDir(format!("bad membership from {}: {e}", node.name)))?;
                    if let Some(id) = view.find_by_peer_urls(&own_urls) {
                        return Ok(IdentityFile { member_id: id, cluster_id: info.cluster_id });
                    }
                    last_error = format!(
                        "member {} does not list a member with peer URLs {own_urls:?}; add it first (etcdctl member add)",
                        node.name
                    );
                }
                Err(e) => last_error = format!("cannot reach {}: {e}", node.name),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(EtcdError::DataDir(format!("cannot join the existing cluster: {last_error}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A running member.
pub struct EtcdServer {
    /// The shared server state.
    pub server: Arc<Server>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Client listener addresses actually bound.
    pub client_addrs: Vec<std::net::SocketAddr>,
}

impl EtcdServer {
    /// Starts a member from etcd-style configuration.
    pub async fn start(config: EtcdConfig) -> Result<EtcdServer, EtcdError> {
        config.validate()?;
        let data_dir: PathBuf = config.data_dir();
        let member_dir = data_dir.join("member");
        let (identity_file, fresh) = load_or_create_identity(&config, &member_dir).await?;
        let is_new = config.is_new_cluster()?;
        let client_urls = split_urls(&config.advertise_client_urls);
        let peer_urls = split_urls(&config.initial_advertise_peer_urls);

        let store = Store::open(&member_dir.join("store"), &EngineOptions::default())?;
        // Watch streams run on this runtime: wake them from it, not from the apply thread.
        store.hub().wake_sessions_on(&tokio::runtime::Handle::current());
        if config.experimental_initial_corrupt_check {
            store.engine().verify_all()?;
        }

        let bootstrap = (fresh && is_new).then(|| -> Result<BTreeMap<u64, MemberNode>, EtcdError> {
            let token = &config.initial_cluster_token;
            Ok(config
                .initial_cluster()?
                .into_iter()
                // Every founding member must write the same first membership entry:
                // client URLs are published by each member once it runs.
                .map(|(name, urls)| {
                    (ids::member_id(&urls, token, None), MemberNode { name, peer_urls: urls, client_urls: vec![] })
                })
                .collect())
        });
        let bootstrap = bootstrap.transpose()?;
        let election = Duration::from_millis(config.election_timeout);
        let metrics = Metrics::new(ETCD_VERSION, config.metrics == MetricsLevel::Extensive);
        let node_config = NodeConfig {
            id: identity_file.member_id,
            cluster_id: identity_file.cluster_id,
            dir: member_dir.clone(),
            heartbeat: Duration::from_millis(config.heartbeat_interval),
            election_timeout: election,
            snapshot_count: config.snapshot_count,
            snapshot_catchup_entries: config.experimental_snapshot_catchup_entries,
            log_retention: strake_raft::LogRetention { bytes: config.log_retention_bytes },
            request_timeout: Duration::from_secs(5) + 2 * election,
            bootstrap,
            log_metrics: metrics.log.clone(),
            apply_metrics: metrics.apply.clone(),
            forward_metrics: metrics.forward.clone(),
            admission_metrics: metrics.admission.clone(),
        };
        let node = RaftNode::start(node_config, store.clone()).await?;

        let min_lease_ttl_seconds = ((3 * config.election_timeout) as f64 / 2000.0).ceil() as i64;
        let server = Arc::new(Server {
            node: node.clone(),
            store,
            identity: Identity {
                member_id: identity_file.member_id,
                cluster_id: identity_file.cluster_id,
                name: config.name.clone(),
                client_urls,
                peer_urls,
            },
            limits: Limits {
                max_request_bytes: config.max_request_bytes as usize,
                max_txn_ops: config.max_txn_ops as usize,
                quota_bytes: config.quota_bytes(),
                min_lease_ttl_seconds,
            },
            metrics,
            progress_notify_interval: config.experimental_watch_progress_notify_interval,
        });

        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let grpc_limit = config.max_request_bytes as usize + (512 << 10);
        let client_router = tonic::service::Routes::new(
            KvServer::new(kv::KvService::new(server.clone()))
                .max_decoding_message_size(grpc_limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(WatchServer::new(watch::WatchService::new(server.clone())).max_decoding_message_size(grpc_limit))
        .add_service(LeaseServer::new(lease::LeaseService::new(server.clone())).max_decoding_message_size(grpc_limit))
        .add_service(
            ClusterServer::new(cluster::ClusterService::new(server.clone())).max_decoding_message_size(grpc_limit),
        )
        .add_service(
            MaintenanceServer::new(maintenance::MaintenanceService::new(server.clone()))
                .max_decoding_message_size(grpc_limit),
        )
        .add_service(AuthServer::new(auth::AuthService::new(server.clone())).max_decoding_message_size(grpc_limit))
        .add_service(LockServer::new(lock::LockService::new(server.clone())).max_decoding_message_size(grpc_limit))
        .add_service(
            ElectionServer::new(election::ElectionService::new(server.clone())).max_decoding_message_size(grpc_limit),
        )
        .into_axum_router()
        .layer(server.metrics.grpc.layer())
        .merge(http::routes(server.clone()));

        let peer_router =
            tonic::service::Routes::new(PeerService::server(node.clone(), config.name.clone())).into_axum_router();
        for url in split_urls(&config.listen_peer_urls) {
            let addr = listen_addr(&url)?;
            let listener =
                TcpListener::bind(&addr).await.map_err(|source| EtcdError::Listen { addr: addr.clone(), source })?;
            tracing::info!(%url, "serving peer traffic");
            // Moved to the core threads' reactor (see `RaftNode::spawn_on_core`).
            let listener = listener.into_std().map_err(|source| EtcdError::Listen { addr: addr.clone(), source })?;
            let (router, shutdown) = (peer_router.clone(), shutdown_rx.clone());
            node.spawn_on_core(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve::serve(listener, router, shutdown).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve peer traffic"),
                }
            });
        }
        // Like etcd, serve clients only once this member's name and client URLs are
        // part of the membership (which needs a leader and a quorum).
        let attributes = MemberNode {
            name: config.name.clone(),
            peer_urls: server.identity.peer_urls.clone(),
            client_urls: server.identity.client_urls.clone(),
        };
        node.publish_attributes(attributes).await;
        let mut client_addrs = Vec::new();
        for url in split_urls(&config.listen_client_urls) {
            let addr = listen_addr(&url)?;
            let listener =
                TcpListener::bind(&addr).await.map_err(|source| EtcdError::Listen { addr: addr.clone(), source })?;
            client_addrs
                .push(listener.local_addr().map_err(|source| EtcdError::Listen { addr: addr.clone(), source })?);
            tracing::info!(%url, "serving client requests");
            tokio::spawn(serve::serve(listener, client_router.clone(), shutdown_rx.clone()));
        }
        if let Some(urls) = &config.listen_metrics_urls {
            for url in split_urls(urls) {
                let addr = listen_addr(&url)?;
                let listener = TcpListener::bind(&addr)
                    .await
                    .map_err(|source| EtcdError::Listen { addr: addr.clone(), source })?;
                tracing::info!(%url, "serving metrics");
                tokio::spawn(serve::serve(listener, http::routes(server.clone()), shutdown_rx.clone()));
            }
        }
        tokio::spawn(crate::auto_compact::run(server.clone(), config.auto_compaction()?));

        tracing::info!(
            name = %config.name,
            member_id = %format!("{:x}", identity_file.member_id),
            cluster_id = %format!("{:x}", identity_file.cluster_id),
            data_dir = %data_dir.display(),
            "strake member started"
        );
        Ok(EtcdServer { server, shutdown, client_addrs })
    }

    /// Stops serving, shuts Raft down, and stops the store's background work (the
    /// process may exit right after).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.server.node.shutdown().await;
        self.server.store.engine().stop_background_work();
    }
}
