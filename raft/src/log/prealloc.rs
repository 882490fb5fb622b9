//! Preallocated segment files (see [`super::format`]): every new segment starts as
//! [`SEGMENT_TARGET_BYTES`] of zeros, written and synced, so syncing an append only
//! flushes data. The next segment's file (the spare) is prepared on a background
//! thread once the current one is half full; a rollover that finds no spare ready
//! starts a plain growing segment instead of waiting, so appends never stall on zeros.
//!
//! Invariant: the spare file exists under its final name only once it is entirely
//! zeros and durable; the temporary name holds a spare in preparation and is
//! deleted on open.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::format::SEGMENT_TARGET_BYTES;
use super::writer::sync_dir;

/// The prepared spare (not a segment name: it does not end in `.wal`).
const SPARE: &str = "next-segment.zeros";
/// The spare while it is being written.
const SPARE_TMP: &str = "next-segment.zeros.tmp";
/// Zeros written per call while filling a file.
const FILL_CHUNK: usize = 1 << 20;

enum Spare {
    None,
    Preparing(JoinHandle<io::Result<()>>),
    Ready,
}

/// Hands out zero-filled segment files, preparing the next one in the background.
pub(crate) struct Preallocator {
    dir: PathBuf,
    spare: Spare,
    /// No segment was created yet: the first one (a new log's, at startup) waits for
    /// the spare that `new` started preparing.
    first: bool,
}

impl Preallocator {
    /// Picks up a spare left by an earlier run (removing a half-written one), or
    /// starts preparing one, so even a new log's first segment need not wait.
    pub(crate) fn new(dir: &Path) -> Preallocator {
        let _ = std::fs::remove_file(dir.join(SPARE_TMP));
        let spare = if dir.join(SPARE).is_file() { Spare::Ready } else { Spare::None };
        let mut p = Preallocator { dir: dir.to_path_buf(), spare, first: true };
        p.prepare_spare();
        p
    }

    /// Called after writing up to `end` bytes of the current segment: once it is half
    /// full, starts preparing the next segment's file.
    pub(crate) fn written_up_to(&mut self, end: u64) {
        if end >= SEGMENT_TARGET_BYTES / 2 {
            self.prepare_spare();
        }
    }

    /// Starts preparing the spare on a background thread, unless there is one.
    fn prepare_spare(&mut self) {
        if !matches!(self.spare, Spare::None) {
            return;
        }
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new().name("strake-raft-log-prealloc".into()).spawn(move || {
            let tmp = dir.join(SPARE_TMP);
            fill_with_zeros(&tmp)?;
            std::fs::rename(&tmp, dir.join(SPARE))?;
            sync_dir(&dir)
        });
        match spawned {
            Ok(handle) => self.spare = Spare::Preparing(handle),
            Err(e) => tracing::warn!(error = %e, "cannot start preparing the next raft log segment"),
        }
    }

    /// Creates the segment file `path` (replacing any file there): the spare, renamed,
    /// when it is ready; otherwise an empty file that grows as it is written (appends
    /// to it sync size and block map too, but never wait for zeros), and the next
    /// spare is prepared meanwhile. The directory entry is durable.
    ///
    /// Under a bulk load a 16 MiB segment fills in a fraction of a second; waiting
    /// here for its zeros made every write wait behind 16 MiB of disk writes. Only
    /// the first segment created after opening (a new log's first, at startup) waits
    /// for the spare that opening started.
    pub(crate) fn create_segment(&mut self, path: &Path) -> io::Result<File> {
        let first = std::mem::take(&mut self.first);
        let ready = match std::mem::replace(&mut self.spare, Spare::None) {
            Spare::Ready => true,
            Spare::None => false,
            Spare::Preparing(handle) if !handle.is_finished() && !first => {
                self.spare = Spare::Preparing(handle);
                false
            }
            Spare::Preparing(handle) => match handle.join() {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "preparing the next raft log segment failed");
                    false
                }
                Err(_) => {
                    tracing::warn!("preparing the next raft log segment panicked");
                    false
                }
            },
        };
        let renamed = ready && std::fs::rename(self.dir.join(SPARE), path).is_ok();
        if !renamed {
            OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
            self.prepare_spare();
        }
        sync_dir(&self.dir)?;
        OpenOptions::new().read(true).write(true).open(path)
    }

    /// Waits until the spare in preparation (if any) is ready.
    #[cfg(test)]
    fn wait_for_spare(&mut self) {
        if let Spare::Preparing(handle) = std::mem::replace(&mut self.spare, Spare::None) {
            handle.join().expect("no panic").expect("spare written");
            self.spare = Spare::Ready;
        }
    }
}

/// Writes a file of [`SEGMENT_TARGET_BYTES`] zeros at `path` and syncs it.
fn fill_with_zeros(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let zeros = vec![0u8; FILL_CHUNK];
    let mut at = 0u64;
    while at < SEGMENT_TARGET_BYTES {
        let n = (SEGMENT_TARGET_BYTES - at).min(FILL_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero_file(path: &Path) -> bool {
        let bytes = std::fs::read(path).unwrap();
        bytes.len() as u64 == SEGMENT_TARGET_BYTES && bytes.iter().all(|b| *b == 0)
    }

    #[test]
    fn segments_are_zero_filled_spares_and_never_wait_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Preallocator::new(dir.path());
        assert!(!matches!(p.spare, Spare::None), "a new log prepares its first segment at once");
        p.wait_for_spare();
        let first = dir.path().join("first");
        p.create_segment(&first).unwrap();
        assert!(zero_file(&first));
        let without_spare = dir.path().join("without-spare");
        p.create_segment(&without_spare).unwrap();
        assert_eq!(std::fs::metadata(&without_spare).unwrap().len(), 0, "no spare: a plain growing file");
        assert!(!matches!(p.spare, Spare::None), "and the next spare is on its way");
        p.wait_for_spare();
        p.written_up_to(SEGMENT_TARGET_BYTES / 2);
        let second = dir.path().join("second");
        p.create_segment(&second).unwrap();
        assert!(zero_file(&second));
        assert!(!dir.path().join(SPARE).exists(), "the spare was used");
        p.written_up_to(SEGMENT_TARGET_BYTES / 2 - 1);
        assert!(matches!(p.spare, Spare::None), "prepared too early");
        p.written_up_to(SEGMENT_TARGET_BYTES / 2);
        assert!(!matches!(p.spare, Spare::None), "half full: the next spare is prepared");
    }

    #[test]
    fn a_half_written_spare_is_discarded_and_a_ready_one_reused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SPARE_TMP), b"partial").unwrap();
        let mut p = Preallocator::new(dir.path());
        p.wait_for_spare();
        let seg = dir.path().join("seg");
        p.create_segment(&seg).unwrap();
        assert!(zero_file(&seg));
        assert!(!dir.path().join(SPARE_TMP).exists() && !dir.path().join(SPARE).exists());
        fill_with_zeros(&dir.path().join(SPARE)).unwrap();
        let mut q = Preallocator::new(dir.path());
        assert!(matches!(q.spare, Spare::Ready));
        let next = dir.path().join("next");
        q.create_segment(&next).unwrap();
        assert!(zero_file(&next));
        assert!(!dir.path().join(SPARE).exists());
    }
}
