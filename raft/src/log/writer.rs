//! The log's writer thread: the only place that writes log files.
//!
//! Commands are executed in the order they were issued. Appends queued together are
//! written and then made durable with one `fdatasync` per touched segment (group
//! commit) before any of their callbacks fire; a truncate, purge or vote is executed
//! only after every earlier append is durable, and is itself durable before it is
//! acknowledged (for a purge: its purge point; the segments below it are deleted
//! afterwards by the reclaimer thread). Segments are written with direct I/O where
//! the file system allows it ([`super::segment_file`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format;
use super::metrics::LogMetrics;
use super::prealloc::Preallocator;
use super::reclaim::Reclaimer;
use super::segment_file::SegmentFile;
use super::Shared;

/// Called once an append is durable (or failed).
pub type FlushCallback = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Work for the writer thread.
pub(crate) enum Command {
    /// Write `bytes` at `offset` of segment `segment` (creating it when `create`).
    Append { segment: u64, create: bool, offset: u64, bytes: Vec<u8>, last_index: u64, callback: FlushCallback },
    /// Cut segment `segment` at `offset` and delete the segments in `remove`; entries
    /// after `keep_upto` are gone.
    Truncate {
        segment: u64,
        offset: u64,
        remove: Vec<u64>,
        keep_upto: u64,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
    /// Persist the purge point `body`, then delete the segments in `remove`.
    Purge { body: Vec<u8>, remove: Vec<u64>, done: tokio::sync::oneshot::Sender<io::Result<()>> },
    /// Persist the vote `body`.
    SaveVote { body: Vec<u8>, done: tokio::sync::oneshot::Sender<io::Result<()>> },
}

pub(crate) struct Writer {
    dir: PathBuf,
    files: BTreeMap<u64, SegmentFile>,
    shared: Arc<Shared>,
    prealloc: Preallocator,
    reclaimer: Reclaimer,
    metrics: LogMetrics,
    /// Whether the first segment's I/O mode was logged.
    mode_logged: bool,
}

/// Writes `body` (framed) to `dir/name` atomically and durably.
pub(crate) fn write_meta_file(dir: &Path, name: &str, body: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = File::create(&tmp)?;
    file.write_all_at(&format::frame_meta(body), 0)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Makes directory entries (creations, renames, deletions) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Writer {
    pub(crate) fn new(dir: PathBuf, shared: Arc<Shared>, metrics: LogMetrics) -> Writer {
        let prealloc = Preallocator::new(&dir);
        Writer {
            dir,
            files: BTreeMap::new(),
            shared,
            prealloc,
            reclaimer: Reclaimer::start(),
            metrics,
            mode_logged: false,
        }
    }

    /// The open file of `segment`; `create`: a new segment, preallocated.
    fn file(&mut self, segment: u64, create: bool) -> io::Result<&mut SegmentFile> {
        if create {
            self.files.remove(&segment);
            for older in self.files.values_mut() {
                older.release_buffer();
            }
        }
        if !self.files.contains_key(&segment) {
            let path = format::segment_path(&self.dir, segment);
            let file = if create {
                self.prealloc.create_segment(&path)?
            } else {
                OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?
            };
            let file = SegmentFile::open(&path, file);
            if !std::mem::replace(&mut self.mode_logged, true) {
                tracing::info!(direct_io = file.is_direct(), dir = %self.dir.display(), "raft log segments opened");
            }
            self.files.insert(segment, file);
        }
        Ok(self.files.get_mut(&segment).expect("inserted above"))
    }

    /// Runs until every sender is gone.
    pub(crate) fn run(mut self, rx: std::sync::mpsc::Receiver<Command>) {
        let mut pending: Vec<(FlushCallback, u64)> = Vec::new();
        let mut touched: Vec<u64> = Vec::new();
        // Injected bug ("log-ack-before-write"): appends acknowledged at once and
        // written only every couple of seconds, so a crash loses acknowledged entries.
        let mut deferred: Vec<(u64, bool, u64, Vec<u8>)> = Vec::new();
        let mut last_deferred_write = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(c) => c,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if !deferred.is_empty() && last_deferred_write.elapsed() > std::time::Duration::from_secs(2) {
                        self.write_deferred(&mut deferred);
                        last_deferred_write = std::time::Instant::now();
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                let defer = (|| {
                    fail::fail_point!("log-ack-before-write", |_| true);
                    false
                })();
                match cmd {
                    Command::Append { segment, create, offset, bytes, last_index, callback } if defer => {
                        deferred.push((segment, create, offset, bytes));
                        self.shared.mark_durable(last_index);
                        callback(Ok(()));
                    }
                    Command::Append { segment, create, offset, bytes, last_index, callback } => {
                        let res = self.file(segment, create).and_then(|f| f.append(offset, &bytes));
                        if let Err(e) = res {
                            callback(Err(e));
                        } else {
                            self.prealloc.written_up_to(offset + bytes.len() as u64);
                            self.metrics.write_bytes.inc_by(bytes.len() as u64);
                            if !touched.contains(&segment) {
                                touched.push(segment);
                            }
                            pending.push((callback, last_index));
                        }
                    }
                    other => {
                        self.sync_pending(&mut pending, &mut touched);
                        self.write_deferred(&mut deferred);
                        self.execute(other);
                    }
                }
                next = rx.try_recv().ok();
            }
            self.sync_pending(&mut pending, &mut touched);
        }
    }

    fn write_deferred(&mut self, deferred: &mut Vec<(u64, bool, u64, Vec<u8>)>) {
        for (segment, create, offset, bytes) in deferred.drain(..) {
            if let Ok(f) = self.file(segment, create) {
                let _ = f.append(offset, &bytes).and_then(|()| f.sync());
            }
        }
    }

    fn sync_pending(&mut self, pending: &mut Vec<(FlushCallback, u64)>, touched: &mut Vec<u64>) {
        if pending.is_empty() {
            return;
        }
        let mut result = Ok(());
        let started = std::time::Instant::now();
        // Injected slow disk ("log-sync-delay", `return(MS)`): every group of appends
        // takes MS longer to become durable (tests of the leader's flush overlap).
        (|| {
            fail::fail_point!("log-sync-delay", |ms: Option<String>| {
                let ms = ms.and_then(|m| m.parse().ok()).unwrap_or(1000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
            });
        })();
        for seg in touched.drain(..) {
            if let Some(f) = self.files.get_mut(&seg) {
                if let Err(e) = f.sync() {
                    result = Err(e);
                }
            }
        }
        self.metrics.fsync_duration.observe(started.elapsed().as_secs_f64());
        let last = pending.last().map(|(_, i)| *i).unwrap_or(0);
        if result.is_ok() {
            self.shared.mark_durable(last);
        }
        for (cb, _) in pending.drain(..) {
            cb(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }

    fn execute(&mut self, cmd: Command) {
        match cmd {
            Command::Append { .. } => unreachable!("appends are handled by run"),
            Command::Truncate { segment, offset, remove, keep_upto, done } => {
                self.shared.cap_durable(keep_upto);
                let res = (|| {
                    for seg in &remove {
                        self.files.remove(seg);
                        remove_file_if_exists(&format::segment_path(&self.dir, *seg))?;
                    }
                    self.file(segment, false)?.truncate(offset)?;
                    sync_dir(&self.dir)
                })();
                let _ = done.send(res);
            }
            Command::Purge { body, remove, done } => {
                // Durable once the purge point is; the segments below it are
                // garbage from then on and go on the reclaimer thread.
                let res = write_meta_file(&self.dir, super::PURGED_FILE, &body);
                if res.is_ok() && !remove.is_empty() {
                    let handles =
                        remove.iter().filter_map(|seg| self.files.remove(seg)).map(SegmentFile::into_file).collect();
                    let paths = remove.iter().map(|seg| format::segment_path(&self.dir, *seg)).collect();
                    self.reclaimer.delete(self.dir.clone(), paths, handles);
                }
                let _ = done.send(res);
            }
            Command::SaveVote { body, done } => {
                let _ = done.send(write_meta_file(&self.dir, super::VOTE_FILE, &body));
            }
        }
    }
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
