//! Deleting purged segments off the writer thread.
//!
//! A purge is acknowledged once its purge point is durable; the segments wholly
//! below it are garbage from then on (`load_segments` deletes any left over by a
//! crash). Unlinking gigabytes of segment files makes ext4 free their blocks, which
//! took over a second while loading 20 GiB; done on the writer thread it held every
//! append behind it. The reclaimer thread does it instead, one file at a time.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;

use super::writer::sync_dir;

/// Segments to delete, with their open handles (closing the last handle of an
/// unlinked file is what frees its blocks, so that happens here too).
struct Job {
    dir: PathBuf,
    paths: Vec<PathBuf>,
    handles: Vec<File>,
}

/// A background thread deleting purged segments in the order they were handed over.
pub(crate) struct Reclaimer {
    tx: Option<mpsc::Sender<Job>>,
}

impl Reclaimer {
    /// Starts the thread (or, if it cannot start, deletes inline).
    pub(crate) fn start() -> Reclaimer {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("strake-raft-log-reclaim".into()).spawn(move || {
            for job in rx {
                reclaim(job);
            }
        });
        match spawned {
            Ok(_) => Reclaimer { tx: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the raft log reclaimer; purged segments are deleted inline");
                Reclaimer { tx: None }
            }
        }
    }

    /// Deletes `paths` (whose open handles are `handles`) in the background.
    pub(crate) fn delete(&self, dir: PathBuf, paths: Vec<PathBuf>, handles: Vec<File>) {
        let job = Job { dir, paths, handles };
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    reclaim(job);
                }
            }
            None => reclaim(job),
        }
    }
}

fn reclaim(job: Job) {
    for path in &job.paths {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a purged raft log segment");
            }
        }
    }
    drop(job.handles);
    if let Err(e) = sync_dir(&job.dir) {
        tracing::warn!(dir = %job.dir.display(), error = %e, "cannot sync the raft log directory after deleting purged segments");
    }
}
