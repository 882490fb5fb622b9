//! The Watch service: one bidirectional stream carries many watchers.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use prost::Message;
use strake_proto::etcdserverpb::watch_create_request::FilterType;
use strake_proto::etcdserverpb::watch_request::RequestUnion;
use strake_proto::etcdserverpb::watch_server::Watch;
use strake_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use strake_proto::mvccpb::Event;
use strake_store::{KeyRange, SessionMessage, StoreError, WatchSession, WatchSpec};
use tonic::{Request, Response, Status, Streaming};

use crate::context::{Server, Shared};

/// The Watch service.
#[derive(Clone)]
pub struct WatchService {
    server: Shared,
}

impl WatchService {
    /// The service.
    pub fn new(server: Shared) -> WatchService {
        WatchService { server }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = request.metadata().get("hasleader").is_some_and(|v| v == "true");
        let stream = StreamLoop::new(self.server.clone(), request.into_inner(), require_leader);
        // The response stream is the stream's loop itself: polled by the HTTP/2
        // stream's task, it reads requests and the session's events and yields the
        // responses. A spawned task feeding a channel cost every watcher one more
        // hand-off (and thread wake-up) per event.
        let responses = futures::stream::unfold(stream, |mut stream| async move {
            let batch = stream.step().await?;
            Some((futures::stream::iter(batch), stream))
        })
        .flatten();
        Ok(Response::new(Box::pin(responses)))
    }
}

/// Per-watcher options the store does not need.
#[derive(Default, Clone, Copy)]
struct WatcherOptions {
    fragment: bool,
}

/// One client watch stream: its requests, its watchers' session, and its timers.
/// Ends when the client closes its side or after an error (sent as the last item).
/// Counted in the stream and watcher gauges while it lives (see `Drop`).
struct StreamLoop {
    server: Shared,
    requests: Streaming<WatchRequest>,
    session: WatchSession,
    options: std::collections::HashMap<i64, WatcherOptions>,
    progress_tick: tokio::time::Interval,
    leader_check: tokio::time::Interval,
    require_leader: bool,
    ended: bool,
}

impl StreamLoop {
    fn new(server: Shared, requests: Streaming<WatchRequest>, require_leader: bool) -> StreamLoop {
        let every = |period| tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        server.metrics.watch_streams.inc();
        StreamLoop {
            session: WatchSession::new(server.store.clone()),
            progress_tick: every(server.progress_notify_interval),
            // The first leader check is immediate.
            leader_check: tokio::time::interval(std::time::Duration::from_millis(500)),
            server,
            requests,
            options: Default::default(),
            require_leader,
            ended: false,
        }
    }

    /// Waits for the next responses to send; `None` once the stream is over.
    async fn step(&mut self) -> Option<Vec<Result<WatchResponse, Status>>> {
        if self.ended {
            return None;
        }
        let outcome = self.next_responses().await;
        match outcome {
            Ok(Some(responses)) => Some(responses.into_iter().map(Ok).collect()),
            Ok(None) => None,
            Err(status) => {
                self.ended = true;
                Some(vec![Err(status)])
            }
        }
    }

    async fn next_responses(&mut self) -> Result<Option<Vec<WatchResponse>>, Status> {
        let server = self.server.clone();
        loop {
            tokio::select! {
                req = self.requests.next() => {
                    let req = match req {
                        None => return Ok(None),
                        Some(Err(e)) => return Err(e),
                        Some(Ok(r)) => r,
                    };
                    match req.request_union {
                        Some(RequestUnion::CreateRequest(c)) => {
                            let fragment = c.fragment;
                            let resp = create(&server, &mut self.session, c);
                            if !resp.canceled {
                                self.options.insert(resp.watch_id, WatcherOptions { fragment });
                            }
                            return Ok(Some(vec![resp]));
                        }
                        Some(RequestUnion::CancelRequest(c)) if self.session.cancel(c.watch_id) => {
                            self.options.remove(&c.watch_id);
                            server.metrics.watchers.dec();
                            return Ok(Some(vec![WatchResponse {
                                header: Some(server.header(0)),
                                watch_id: c.watch_id,
                                canceled: true,
                                ..Default::default()
                            }]));
                        }
                        // Cancelling an unknown watcher has no answer (as etcd).
                        Some(RequestUnion::CancelRequest(_)) => {}
                        Some(RequestUnion::ProgressRequest(_)) => self.session.request_progress(),
                        None => {}
                    }
                }
                msg = self.session.next() => return Ok(Some(responses(&server, msg, &self.options))),
                _ = self.progress_tick.tick() => self.session.request_watcher_progress(),
                _ = self.leader_check.tick(), if self.require_leader => {
                    if server.node.status().leader.is_none() {
                        return Err(Status::unavailable("etcdserver: no leader"));
                    }
                }
            }
        }
    }
}

impl Drop for StreamLoop {
    /// The stream is gone (client closed, error, or connection dropped): so are its
    /// remaining watchers.
    fn drop(&mut self) {
        self.server.metrics.watch_streams.dec();
        self.server.metrics.watchers.sub(self.session.len() as i64);
    }
}

fn create(server: &Server, session: &mut WatchSession, c: WatchCreateRequest) -> WatchResponse {
    let refused = |reason: String| WatchResponse {
        header: Some(server.header(0)),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: reason,
        ..Default::default()
    };
    if c.start_revision < 0 {
        return refused(StoreError::FutureRevision.to_string());
    }
    let spec = WatchSpec {
        range: KeyRange::new(&c.key, &c.range_end),
        start_revision: c.start_revision,
        prev_kv: c.prev_kv,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        progress_notify: c.progress_notify,
    };
    match session.create(c.watch_id, spec) {
        Ok((id, revision)) => {
            server.metrics.watchers.inc();
            WatchResponse { header: Some(server.header(revision)), watch_id: id, created: true, ..Default::default() }
        }
        Err(e) => refused(e.to_string()),
    }
}

/// Turns a session message into watch responses, splitting large event batches
/// into fragments for watchers that asked for it.
fn responses(
    server: &Server,
    msg: SessionMessage,
    options: &std::collections::HashMap<i64, WatcherOptions>,
) -> Vec<WatchResponse> {
    match msg {
        SessionMessage::Events { watch_id, events } => {
            let revision = events.last().and_then(|e| e.kv.as_ref()).map_or(0, |kv| kv.mod_revision);
            let header = Some(server.header(revision));
            let fragment = options.get(&watch_id).is_some_and(|o| o.fragment);
            if !fragment {
                return vec![WatchResponse { header, watch_id, events, ..Default::default() }];
            }
            fragments(events, server.limits.max_request_bytes)
                .into_iter()
                .map(|(events, more)| WatchResponse { header, watch_id, events, fragment: more, ..Default::default() })
                .collect()
        }
        SessionMessage::Compacted { watch_id, compact_revision } => {
            server.metrics.watchers.dec();
            vec![WatchResponse {
                header: Some(server.header(0)),
                watch_id,
                canceled: true,
                compact_revision,
                cancel_reason: StoreError::Compacted.to_string(),
                ..Default::default()
            }]
        }
        SessionMessage::Progress { revision } => {
            vec![WatchResponse { header: Some(server.header(revision)), watch_id: -1, ..Default::default() }]
        }
        SessionMessage::WatcherProgress { watch_id, revision } => {
            vec![WatchResponse { header: Some(server.header(revision)), watch_id, ..Default::default() }]
        }
    }
}

/// Splits events into groups whose encoded size stays under `limit` (a single event
/// larger than the limit travels alone). Each group is paired with "more follow".
pub fn fragments(events: Vec<Event>, limit: usize) -> Vec<(Vec<Event>, bool)> {
    let mut groups: Vec<Vec<Event>> = vec![Vec::new()];
    let mut size = 0usize;
    for e in events {
        let len = e.encoded_len() + 4;
        let current = groups.last_mut().expect("never empty");
        if !current.is_empty() && size + len > limit {
            groups.push(Vec::new());
            size = 0;
        }
        size += len;
        groups.last_mut().expect("never empty").push(e);
    }
    let n = groups.len();
    groups.into_iter().enumerate().map(|(i, g)| (g, i + 1 < n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strake_proto::mvccpb::KeyValue;

    #[test]
    fn fragments_split_by_size_and_flag_all_but_last() {
        let ev = |n: usize| Event {
            kv: Some(KeyValue { key: "k".into(), value: vec![0u8; n].into(), ..Default::default() }),
            ..Default::default()
        };
        let parts = fragments(vec![ev(600), ev(600), ev(600)], 1000);
        assert_eq!(parts.len(), 3);
        assert!(parts[0].1 && parts[1].1 && !parts[2].1);
        let whole = fragments(vec![ev(10), ev(10)], 1000);
        assert_eq!(whole.len(), 1);
        assert!(!whole[0].1);
    }
}
