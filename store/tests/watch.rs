//! Watch sessions against the model: every watcher receives exactly the model's
//! events of every revision from its start, in order, none duplicated or skipped,
//! each revision in one message, with `prev_kv` when asked and the NOPUT/NODELETE
//! filters applied; slow consumers catch up from storage; compacted starts are
//! cancelled; progress answers only when every watcher is synced; sessions woken
//! from their runtime's task miss nothing.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use strake_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};
use strake_proto::mvccpb::{event::EventType, Event};
use strake_proto::strakepb::{write_request::Request as W, WriteRequest};
use strake_store::watch::session::SESSION_QUEUE_CAPACITY;
use strake_store::{EngineOptions, KeyRange, SessionMessage, Store, WatchSession, WatchSpec};

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens the store without the cache of newest versions, so every put over a long
/// value finds only its key's head and leaves the previous value to the hub (see
/// `DeferredPrev`), which watchers with `prev_kv` must still receive.
fn open(dir: &std::path::Path) -> Store {
    let options = EngineOptions { latest_cache_bytes: 0, ..EngineOptions::default() };
    Store::open(dir, &options).expect("open the store")
}

fn wr(request: W) -> WriteRequest {
    WriteRequest { request: Some(request), ..Default::default() }
}

fn spec(keys: &KeySel, start_revision: i64, prev_kv: bool, no_put: bool, no_delete: bool) -> WatchSpec {
    let (key, end) = keys.key_and_end();
    WatchSpec { range: KeyRange::new(&key, &end), start_revision, prev_kv, no_put, no_delete, progress_notify: false }
}

/// What a watcher must receive: the model's events of revisions `from..=to` in its
/// range and not filtered out, without `prev_kv` unless asked. `no_prev_at` is a
/// revision whose events carry no `prev_kv` (etcd reads it at `rev - 1`, which is
/// compacted when `rev` is the compaction revision).
fn expected(model: &Model, w: &WatchSpec, from: i64, to: i64, no_prev_at: Option<i64>) -> Vec<Event> {
    let mut out = vec![];
    for (rev, events) in model.events.range(from..).take_while(|(rev, _)| **rev <= to) {
        for e in events {
            let kv = e.kv.as_ref().unwrap();
            let is_put = e.r#type == EventType::Put as i32;
            if !w.range.contains(&kv.key) || (is_put && w.no_put) || (!is_put && w.no_delete) {
                continue;
            }
            let mut e = e.clone();
            if !w.prev_kv || no_prev_at == Some(*rev) {
                e.prev_kv = None;
            }
            out.push(e);
        }
    }
    out
}

fn rev_of(e: &Event) -> i64 {
    e.kv.as_ref().unwrap().mod_revision
}

async fn next(session: &mut WatchSession) -> SessionMessage {
    tokio::time::timeout(STEP_TIMEOUT, session.next()).await.expect("the session answers in time")
}

/// Reads messages until each watcher of `want` has received as many events as it
/// expects, then checks the events (order, no duplicates, no gaps), that no revision
/// is split across messages, and that nothing else is pending: the next message
/// after a progress request is the progress answer at the current revision.
async fn expect_events(session: &mut WatchSession, store: &Store, want: &[(i64, Vec<Event>)]) {
    let mut got: std::collections::BTreeMap<i64, Vec<Vec<Event>>> = Default::default();
    let total = |got: &std::collections::BTreeMap<i64, Vec<Vec<Event>>>, id: i64| {
        got.get(&id).map_or(0, |msgs| msgs.iter().map(Vec::len).sum::<usize>())
    };
    while want.iter().any(|(id, events)| total(&got, *id) < events.len()) {
        match next(session).await {
            SessionMessage::Events { watch_id, events } => {
                assert!(!events.is_empty(), "watcher {watch_id}: empty events message");
                assert!(want.iter().any(|(id, _)| *id == watch_id), "unknown watcher {watch_id}");
                got.entry(watch_id).or_default().push(events);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for (id, events) in want {
        let msgs = got.remove(id).unwrap_or_default();
        let flat: Vec<Event> = msgs.iter().flatten().cloned().collect();
        assert_eq!(flat.len(), events.len(), "watcher {id}: number of events");
        for (i, (g, w)) in flat.iter().zip(events).enumerate() {
            assert_eq!(g, w, "watcher {id}: event {i} of {}", events.len());
        }
        for pair in msgs.windows(2) {
            let (a, b) = (rev_of(pair[0].last().unwrap()), rev_of(&pair[1][0]));
            assert!(a < b, "watcher {id}: revision {a} split across messages (next starts at {b})");
        }
    }
    session.request_progress();
    match next(session).await {
        SessionMessage::Progress { revision } => {
            assert_eq!(revision, store.revision(), "progress revision")
        }
        other => panic!("expected the progress answer (nothing pending), got {other:?}"),
    }
}

fn watcher_spec() -> impl Strategy<Value = (KeySel, bool, bool, bool)> {
    (key_sel(), any::<bool>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.2))
}

async fn random_history(phase1: Vec<Step>, phase2: Vec<Step>, specs: Vec<(KeySel, bool, bool, bool)>, middle: u16) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    let mut marker = 0;
    // Session A, before any write: watchers from revision 1 (catch-up from storage
    // first) and from "now" (0).
    let mut a = WatchSession::new(store.clone());
    let mut a_want = vec![];
    // An empty range is refused, as etcd ("mvcc: watcher range is empty").
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|(keys, ..)| {
            let w = spec(keys, 0, false, false, false);
            let empty = w.range.is_empty();
            if empty {
                assert_eq!(a.create(100, w).unwrap_err(), strake_store::WatchCreateError::EmptyRange);
            }
            !empty
        })
        .collect();
    for (i, (keys, prev_kv, no_put, no_delete)) in specs.iter().enumerate() {
        let start = if i % 2 == 1 { 0 } else { 1 };
        let w = spec(keys, start, *prev_kv, *no_put, *no_delete);
        let (id, published) = a.create(i as i64 + 1, w.clone()).unwrap();
        assert_eq!(published, 1);
        a_want.push((id, w, if start == 0 { 2 } else { 1 }));
    }
    for step in &phase1 {
        apply_step(&store, &mut model, step, marker);
        marker += 1;
    }
    // Session B, in the middle: from an old revision and from "now".
    let mut b = WatchSession::new(store.clone());
    let mut b_want = vec![];
    let middle_rev = 1 + i64::from(middle) % model.rev();
    for (i, (keys, prev_kv, no_put, no_delete)) in specs.iter().enumerate() {
        let start = if i % 2 == 1 { 0 } else { middle_rev };
        let w = spec(keys, start, *prev_kv, *no_put, *no_delete);
        let (id, published) = b.create(0, w.clone()).unwrap();
        assert_eq!((id, published), (i as i64, model.rev()), "auto IDs count from 0");
        b_want.push((id, w, if start == 0 { model.rev() + 1 } else { start }));
    }
    for step in &phase2 {
        apply_step(&store, &mut model, step, marker);
        marker += 1;
    }
    let end = model.rev();
    for (session, want) in [(&mut a, a_want), (&mut b, b_want)] {
        let want: Vec<(i64, Vec<Event>)> =
            want.into_iter().map(|(id, w, from)| (id, expected(&model, &w, from, end, None))).collect();
        expect_events(session, &store, &want).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn sessions_receive_the_models_events(
        phase1 in proptest::collection::vec(write_step(), 1..40),
        phase2 in proptest::collection::vec(write_step(), 0..40),
        specs in proptest::collection::vec(watcher_spec(), 1..5),
        middle in any::<u16>(),
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(random_history(phase1, phase2, specs, middle));
    }
}

/// Applies deterministic random writes until `revisions` more revisions exist.
fn write_revisions(store: &Store, model: &mut Model, revisions: i64) {
    let target = model.rev() + revisions;
    let mut marker = 1_000_000;
    let mut seed = model.rev() as u64;
    while model.rev() < target {
        seed += 1;
        for step in deterministic_writes(64, seed) {
            if model.rev() >= target {
                break;
            }
            apply_step(store, model, &step, marker);
            marker += 1;
        }
    }
}

/// A consumer that reads nothing while more revisions than the session's channel
/// holds are written falls out of the hub and must still get every event exactly
/// once, in order, from the catch-up path.
#[tokio::test]
async fn slow_consumer_gets_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    write_revisions(&store, &mut model, 20);
    let mut session = WatchSession::new(store.clone());
    let all = spec(&KeySel::All, 0, true, false, false);
    let prefix_a = spec(&KeySel::Prefix(0), 0, false, false, false);
    let from_old = spec(&KeySel::FromKey(3), 5, true, false, true);
    let start = model.rev() + 1;
    session.create(1, all.clone()).unwrap();
    session.create(2, prefix_a.clone()).unwrap();
    session.create(3, from_old.clone()).unwrap();
    write_revisions(&store, &mut model, SESSION_QUEUE_CAPACITY as i64 * 2 + 100);
    let end = model.rev();
    let want = vec![
        (1, expected(&model, &all, start, end, None)),
        (2, expected(&model, &prefix_a, start, end, None)),
        (3, expected(&model, &from_old, 5, end, None)),
    ];
    assert!(want[0].1.len() > SESSION_QUEUE_CAPACITY * 2);
    expect_events(&mut session, &store, &want).await;

    // Now while a writer keeps going: the watchers fall behind and rejoin the hub
    // repeatedly, racing with publication.
    let mut writer_model = model.clone();
    let writer_store = store.clone();
    let start = model.rev() + 1;
    let writer = std::thread::spawn(move || {
        write_revisions(&writer_store, &mut writer_model, SESSION_QUEUE_CAPACITY as i64 * 3);
        writer_model
    });
    let mut got: Vec<Event> = vec![];
    // Read slowly at first (so the channel fills), then drain.
    while !writer.is_finished() || got.last().map_or(0, rev_of) < store.revision() {
        if got.len() < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match tokio::time::timeout(Duration::from_millis(500), session.next()).await {
            Ok(SessionMessage::Events { watch_id: 1, events }) => got.extend(events),
            Ok(SessionMessage::Events { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    let model = writer.join().unwrap();
    let want = expected(&model, &all, start, model.rev(), None);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the concurrent phase delivered other events than the model's");
}

/// With the hub waking sessions from a task on their runtime (as the server does),
/// a consumer racing a writer on another thread gets every event once and in order,
/// and never waits for an event already offered to it: a lost wake-up would leave
/// `next` pending with events queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_woken_from_their_runtime_miss_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.hub().wake_sessions_on(&tokio::runtime::Handle::current());
    let mut model = Model::default();
    write_revisions(&store, &mut model, 5);
    let mut session = WatchSession::new(store.clone());
    let all = spec(&KeySel::All, 0, false, false, false);
    session.create(1, all.clone()).unwrap();
    let start = model.rev() + 1;
    let mut writer_model = model.clone();
    let writer_store = store.clone();
    let writer = std::thread::spawn(move || {
        for _ in 0..300 {
            write_revisions(&writer_store, &mut writer_model, 10);
            // Pauses let the consumer drain and wait, so most revisions reach a
            // session that sleeps and must be woken.
            std::thread::sleep(Duration::from_micros(200));
        }
        writer_model
    });
    let last = start + 300 * 10 - 1;
    let mut got: Vec<Event> = vec![];
    while got.last().map_or(0, rev_of) < last {
        match tokio::time::timeout(Duration::from_secs(5), session.next()).await {
            Ok(SessionMessage::Events { watch_id: 1, events }) => got.extend(events),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!(
                "no message for 5 s with events up to {} and the store at {}: a wake-up was lost",
                got.last().map_or(0, rev_of),
                store.revision()
            ),
        }
    }
    let model = writer.join().unwrap();
    assert_eq!(model.rev(), last);
    let want = expected(&model, &all, start, last, None);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the session received other events than the model's");
}

/// A watcher whose start is compacted is cancelled with the compaction revision; one
/// starting exactly at the compaction revision still gets that revision's events
/// (also a deletion, after physical compaction), without `prev_kv` for that revision
/// as etcd (its previous revision is compacted).
#[tokio::test]
async fn compacted_start_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    let step = |store: &Store, model: &mut Model, req: W| {
        let req = wr(req);
        assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
    };
    let put = |k: &str, v: &str| {
        W::Put(PutRequest { key: Bytes::from(k.to_string()), value: Bytes::from(v.to_string()), ..Default::default() })
    };
    for i in 0..10 {
        step(&store, &mut model, put(&format!("k{}", i % 3), &format!("v{i}")));
    }
    // Revision 13 deletes k1 (its last change); 14 overwrites k2.
    step(&store, &mut model, put("k0", "again"));
    step(&store, &mut model, W::DeleteRange(DeleteRangeRequest { key: "k1".into(), ..Default::default() }));
    step(&store, &mut model, put("k2", "again"));
    assert_eq!(model.rev(), 14);
    step(&store, &mut model, W::Compaction(CompactionRequest { revision: 13, physical: false }));
    let all = spec(&KeySel::All, 0, true, false, false);
    for physical_done in [false, true] {
        if physical_done {
            store.wait_compacted(13).await;
        }
        let mut session = WatchSession::new(store.clone());
        let healthy = WatchSpec { start_revision: 13, ..all.clone() };
        session.create(1, WatchSpec { start_revision: 5, ..all.clone() }).unwrap();
        session.create(2, WatchSpec { start_revision: 12, ..all.clone() }).unwrap();
        session.create(3, healthy.clone()).unwrap();
        let mut cancelled = vec![];
        let mut events = vec![];
        while cancelled.len() < 2 || events.len() < 2 {
            match next(&mut session).await {
                SessionMessage::Compacted { watch_id, compact_revision } => {
                    assert_eq!(compact_revision, 13);
                    cancelled.push(watch_id);
                }
                SessionMessage::Events { watch_id: 3, events: e } => events.extend(e),
                other => panic!("unexpected {other:?}"),
            }
        }
        cancelled.sort();
        assert_eq!(cancelled, [1, 2]);
        assert_eq!(events, expected(&model, &healthy, 13, 14, Some(13)), "physical compaction done: {physical_done}");
        assert_eq!(events[0].r#type, EventType::Delete as i32);
        assert!(session.len() == 1, "cancelled watchers are gone");
        expect_events(&mut session, &store, &[]).await;
    }
}

/// A progress request is answered with the published revision, and only once every
/// watcher is synced: after every pending event.
#[tokio::test]
async fn progress_only_when_synced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    // No watchers: answered at once.
    let mut idle = WatchSession::new(store.clone());
    idle.request_progress();
    assert_eq!(next(&mut idle).await, SessionMessage::Progress { revision: 1 });

    write_revisions(&store, &mut model, 60);
    let mut session = WatchSession::new(store.clone());
    let all = spec(&KeySel::All, 1, false, false, false);
    session.create(7, all.clone()).unwrap();
    // Unsynced (catching up from revision 1): the request waits for the catch-up.
    session.request_progress();
    let mut got = vec![];
    loop {
        match next(&mut session).await {
            SessionMessage::Events { watch_id: 7, events } => got.extend(events),
            SessionMessage::Progress { revision } => {
                assert_eq!(revision, model.rev());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, expected(&model, &all, 1, model.rev(), None), "progress came before the events");
    // Synced, with published events not yet read: they come first.
    write_revisions(&store, &mut model, 3);
    session.request_progress();
    let mut got = vec![];
    loop {
        match next(&mut session).await {
            SessionMessage::Events { watch_id: 7, events } => got.extend(events),
            SessionMessage::Progress { revision } => {
                assert_eq!(revision, model.rev());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, expected(&model, &all, model.rev() - 2, model.rev(), None));
}

/// A watcher waiting for a future revision that is moved back to catch-up (the store
/// is replaced by a snapshot) must rejoin the hub and wait, not spin in the session.
#[test]
fn future_watcher_survives_restore() {
    let dir = tempfile::tempdir().unwrap();
    let spare = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let mut model = Model::default();
    write_revisions(&store, &mut model, 10);
    store.checkpoint(&spare.path().join("cp")).unwrap();
    let start = model.rev() + 20;
    let w = spec(&KeySel::All, start, false, false, false);
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let session_store = store.clone();
    let session_spec = w.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut session = WatchSession::new(session_store);
            session.create(1, session_spec).unwrap();
            tx.send(None).unwrap();
            go_rx.recv().unwrap();
            // Nothing to deliver yet: the session must wait (and so yield).
            let idle = tokio::time::timeout(Duration::from_millis(300), session.next()).await;
            assert!(idle.is_err(), "nothing is due yet, got {idle:?}");
            tx.send(None).unwrap();
            let mut events = vec![];
            while events.len() < 3 {
                match session.next().await {
                    SessionMessage::Events { events: e, .. } => events.extend(e),
                    other => panic!("unexpected {other:?}"),
                }
            }
            tx.send(Some(events)).unwrap();
        });
    });
    assert_eq!(rx.recv().unwrap(), None);
    store.restore(&spare.path().join("cp")).unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(rx.recv_timeout(STEP_TIMEOUT).expect("the session waits instead of spinning after a restore"), None);
    let mut n = 0u64;
    while model.rev() < start + 2 {
        let req = wr(W::Put(PutRequest { key: Bytes::from(format!("r{n}")), ..Default::default() }));
        n += 1;
        assert_eq!(store.apply(&req, &n.to_be_bytes()).unwrap(), model.apply(&req));
    }
    let events = rx.recv_timeout(STEP_TIMEOUT).expect("the watcher delivers").unwrap();
    assert_eq!(events, expected(&model, &w, start, start + 2, None));
}

/// A consumer that fell behind and whose next revision is then compacted gets the
/// events that were already queued, in order, then the cancellation.
#[tokio::test]
async fn slow_consumer_overtaken_by_compaction_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut model = Model::default();
    write_revisions(&store, &mut model, 10);
    let mut session = WatchSession::new(store.clone());
    let all = spec(&KeySel::All, 0, true, false, false);
    let start = model.rev() + 1;
    session.create(1, all.clone()).unwrap();
    write_revisions(&store, &mut model, SESSION_QUEUE_CAPACITY as i64 + 500);
    let compact_at = model.rev() - 10;
    let req = wr(W::Compaction(CompactionRequest { revision: compact_at, physical: false }));
    assert_eq!(store.apply(&req, b"m").unwrap(), model.apply(&req));
    let want = expected(&model, &all, start, model.rev(), None);
    let mut got = vec![];
    loop {
        match next(&mut session).await {
            SessionMessage::Events { watch_id: 1, events } => got.extend(events),
            SessionMessage::Compacted { watch_id: 1, compact_revision } => {
                assert_eq!(compact_revision, compact_at);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got.len() >= SESSION_QUEUE_CAPACITY, "the queued events come first");
    assert_eq!(&got[..], &want[..got.len()], "a gapless prefix of the history");
    assert!(rev_of(got.last().unwrap()) < compact_at);
    assert!(session.is_empty());
}
