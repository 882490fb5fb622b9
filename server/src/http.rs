//! HTTP endpoints on the client port, beside gRPC: /health, /livez, /readyz,
//! /version, /metrics.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use strake_proto::etcdserverpb::{AlarmType, RangeRequest};

use crate::context::{Shared, ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// The HTTP routes.
pub fn routes(server: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// Runs etcd's health checks. Returns the reason for failing, if any.
async fn check(server: &Shared, exclude: &[&str], serializable: bool) -> Result<(), String> {
    for alarm in server.store.alarms() {
        let name = if alarm.alarm == AlarmType::Nospace as i32 { "NOSPACE" } else { "CORRUPT" };
        if !exclude.contains(&name) {
            return Err(format!("ALARM {name}"));
        }
    }
    if server.node.status().leader.is_none() {
        return Err("RAFT NO LEADER".into());
    }
    let probe = RangeRequest { key: "health".into(), keys_only: true, limit: 1, serializable, ..Default::default() };
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), server.range(&probe)).await;
    match read {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("QGET ERROR:{}", e.message())),
        Err(_) => Err("QGET ERROR:timeout".into()),
    }
}

async fn health(State(server): State<Shared>, Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let exclude: Vec<&str> = q.get("exclude").map(|e| e.split(',').collect()).unwrap_or_default();
    let serializable = q.get("serializable").is_some_and(|v| v == "true");
    let (code, body) = match check(&server, &exclude, serializable).await {
        Ok(()) => (StatusCode::OK, serde_json::json!({"health": "true", "reason": ""})),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"health": "false", "reason": reason})),
    };
    (code, axum::Json(body))
}

async fn livez(State(server): State<Shared>) -> impl IntoResponse {
    let probe =
        RangeRequest { key: "health".into(), keys_only: true, limit: 1, serializable: true, ..Default::default() };
    match server.store.range(&probe) {
        Ok(_) => (StatusCode::OK, "ok\n".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("[-]serializable_read failed: {e}\n")),
    }
}

async fn readyz(State(server): State<Shared>) -> impl IntoResponse {
    if server.store.alarms().iter().any(|a| a.alarm == AlarmType::Corrupt as i32) {
        return (StatusCode::SERVICE_UNAVAILABLE, "[-]data_corruption failed\n".to_string());
    }
    if server.node.status().is_learner {
        return (StatusCode::SERVICE_UNAVAILABLE, "[-]non_learner failed\n".to_string());
    }
    match check(&server, &["NOSPACE"], false).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("[-]linearizable_read failed: {reason}\n")),
    }
}

async fn version() -> impl IntoResponse {
    axum::Json(serde_json::json!({"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION}))
}

async fn metrics(State(server): State<Shared>) -> impl IntoResponse {
    let m = &server.metrics;
    let status = server.node.status();
    let engine = server.store.engine();
    m.has_leader.set(status.leader.is_some() as i64);
    m.is_leader.set(status.is_leader as i64);
    m.is_learner.set(status.is_learner as i64);
    m.db_total_size.set(engine.size_bytes() as i64);
    m.db_in_use_size.set(engine.live_bytes() as i64);
    m.current_revision.set(server.store.revision());
    m.compact_revision.set(server.store.compact_revision());
    m.applied_index.set(status.applied_index as i64);
    m.term.set(status.term as i64);
    m.quota_bytes.set(server.limits.quota_bytes);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.render())
}
