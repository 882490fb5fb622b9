//! One segment file as the writer thread writes it: with direct I/O (`O_DIRECT`)
//! when it is preallocated and the file system supports it, else through the page
//! cache (see [`SegmentFile::open`]).
//!
//! With direct I/O an append is only copied into a block-aligned buffer that mirrors
//! the file from the block holding the first byte not yet written; [`SegmentFile::sync`]
//! writes that buffer with one `pwrite` (the last block padded with zeros, which is
//! what the file holds past its last record) and then `fdatasync`s. A write through
//! the page cache copied every appended byte into the kernel's cache and made the
//! `fdatasync` wait for that page's writeback, queued behind RocksDB's own writeback
//! on the same disk; a direct write goes to the device at once.
//!
//! Invariant: in direct mode a [`Tail`] holds exactly the file's bytes from its
//! `start` up to `start + len` (what earlier syncs wrote, then what was appended
//! since), and zeros after them. Rewriting the partial block of earlier records
//! therefore writes the same bytes again: a torn write of that block cannot damage
//! records that were already durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::format::SEGMENT_TARGET_BYTES;

/// Alignment of direct writes (offset, length and buffer address): the page size,
/// a multiple of every logical block size in use.
const BLOCK: usize = 4096;

/// A zero-initialised byte buffer whose start is aligned to [`BLOCK`].
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    capacity: usize,
}

impl AlignedBuf {
    fn with_capacity(capacity: usize) -> AlignedBuf {
        let capacity = capacity.next_multiple_of(BLOCK);
        let raw = vec![0u8; capacity + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK);
        AlignedBuf { raw, start, capacity }
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.capacity]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.capacity]
    }

    /// Makes room for `needed` bytes, keeping the first `keep`.
    fn reserve(&mut self, keep: usize, needed: usize) {
        if needed <= self.capacity {
            return;
        }
        let mut bigger = AlignedBuf::with_capacity(needed.max(self.capacity * 2));
        bigger.as_mut_slice()[..keep].copy_from_slice(&self.as_slice()[..keep]);
        *self = bigger;
    }
}

/// The bytes of a direct-I/O segment from the block that holds its first unwritten
/// byte (see the module invariant).
struct Tail {
    buf: AlignedBuf,
    /// File offset of `buf`'s first byte, a multiple of [`BLOCK`].
    start: u64,
    /// Valid bytes in `buf`; the rest is zeros.
    len: usize,
    /// Whether appends since the last sync are still only in `buf`.
    dirty: bool,
}

enum Mode {
    /// Writes go through the page cache.
    Buffered,
    /// `O_DIRECT`; `None` until the first append (or after a truncation), when the
    /// partial block is read back from the file.
    Direct(Option<Tail>),
}

/// See the module documentation.
pub(crate) struct SegmentFile {
    path: PathBuf,
    file: File,
    mode: Mode,
}

impl SegmentFile {
    /// Opens the existing segment at `path` for writing (`buffered` is the file
    /// opened without direct I/O). A preallocated segment is written with direct I/O
    /// if the file system allows it; a growing one (no spare was ready) through the
    /// page cache: a direct append there also allocates blocks and moves the file's
    /// size, and under a bulk load (when segments grow) that made more probes stall
    /// (BENCHMARKS.md, session 13).
    pub(crate) fn open(path: &Path, buffered: File) -> SegmentFile {
        let preallocated = buffered.metadata().is_ok_and(|m| m.len() >= SEGMENT_TARGET_BYTES);
        if !preallocated {
            return SegmentFile::buffered(path, buffered);
        }
        match Self::direct(path) {
            Ok(direct) => direct,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "raft log segment without direct I/O");
                SegmentFile::buffered(path, buffered)
            }
        }
    }

    /// A segment written with direct I/O.
    fn direct(path: &Path) -> io::Result<SegmentFile> {
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path)?;
        Ok(SegmentFile { path: path.to_path_buf(), file, mode: Mode::Direct(None) })
    }

    /// A segment written through the page cache.
    pub(crate) fn buffered(path: &Path, file: File) -> SegmentFile {
        SegmentFile { path: path.to_path_buf(), file, mode: Mode::Buffered }
    }

    /// The open file (for closing elsewhere: appends not synced are dropped).
    pub(crate) fn into_file(self) -> File {
        self.file
    }

    /// Frees the buffer of a segment that no longer receives appends (a later
    /// segment was started): the writer keeps every segment open until it is purged.
    pub(crate) fn release_buffer(&mut self) {
        if let Mode::Direct(tail) = &mut self.mode {
            if tail.as_ref().is_some_and(|t| !t.dirty) {
                *tail = None;
            }
        }
    }

    /// Whether writes bypass the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct(_))
    }

    /// Appends `bytes` at `offset` (the end of what was appended before, except right
    /// after opening or truncating). Durable only after [`SegmentFile::sync`].
    pub(crate) fn append(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let file = &self.file;
        let tail = match &mut self.mode {
            Mode::Buffered => return file.write_all_at(bytes, offset),
            Mode::Direct(tail) => tail,
        };
        let contiguous = tail.as_ref().is_some_and(|t| t.start + t.len as u64 == offset);
        if !contiguous {
            // Appends are contiguous unless the file was just opened or truncated:
            // a dirty tail elsewhere would be lost, so write it first.
            if let Some(t) = tail.as_mut().filter(|t| t.dirty) {
                write_tail(file, t)?;
            }
            *tail = Some(read_tail(file, offset, bytes.len())?);
        }
        let t = tail.as_mut().expect("set above");
        let end = t.len + bytes.len();
        t.buf.reserve(t.len, end);
        t.buf.as_mut_slice()[t.len..end].copy_from_slice(bytes);
        t.len = end;
        t.dirty = true;
        Ok(())
    }

    /// Makes every append durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if let Mode::Direct(Some(t)) = &mut self.mode {
            if t.dirty {
                if let Err(e) = write_tail(&self.file, t) {
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                    // The file system accepted O_DIRECT at open but not this write:
                    // go on through the page cache.
                    tracing::warn!(path = %self.path.display(), error = %e, "direct write refused; raft log segment falls back to buffered writes");
                    let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
                    file.write_all_at(&t.buf.as_slice()[..t.len], t.start)?;
                    self.file = file;
                    self.mode = Mode::Buffered;
                }
            }
        }
        self.file.sync_data()?;
        if let Mode::Direct(Some(t)) = &mut self.mode {
            keep_last_block(t);
        }
        Ok(())
    }

    /// Cuts the file at `offset` and makes that durable.
    pub(crate) fn truncate(&mut self, offset: u64) -> io::Result<()> {
        if let Mode::Direct(tail) = &mut self.mode {
            // What was appended beyond `offset` is being cut; below it the file
            // already holds everything (appends are synced before a truncation).
            *tail = None;
        }
        self.file.set_len(offset)?;
        self.file.sync_all()
    }
}

/// Reads the block holding `offset` up to `offset`, with room for `more` bytes.
fn read_tail(file: &File, offset: u64, more: usize) -> io::Result<Tail> {
    let start = offset - offset % BLOCK as u64;
    let len = (offset - start) as usize;
    let mut buf = AlignedBuf::with_capacity(len + more);
    if len > 0 {
        let block = &mut buf.as_mut_slice()[..BLOCK];
        let mut read = 0;
        while read < len {
            match file.read_at(&mut block[read..], start + read as u64)? {
                0 => break,
                n => read += n,
            }
        }
        // Past `offset` the file is zeros (or ends): keep the buffer's zeros.
        block[len..].fill(0);
    }
    Ok(Tail { buf, start, len, dirty: false })
}

/// Writes the tail's blocks, the last one padded with the zeros that follow it.
fn write_tail(file: &File, t: &mut Tail) -> io::Result<()> {
    let padded = t.len.next_multiple_of(BLOCK);
    file.write_all_at(&t.buf.as_slice()[..padded], t.start)?;
    t.dirty = false;
    Ok(())
}

/// After a sync: keeps only the last, partial block, the start of the next write.
fn keep_last_block(t: &mut Tail) {
    let whole = t.len - t.len % BLOCK;
    if whole == 0 {
        return;
    }
    let rest = t.len - whole;
    let buf = t.buf.as_mut_slice();
    buf.copy_within(whole..whole + rest, 0);
    buf[rest..whole + rest].fill(0);
    t.start += whole as u64;
    t.len = rest;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        Sync,
        Truncate(usize),
        Reopen,
        Release,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop_oneof![1usize..64, 64usize..5000, 5000usize..20000].prop_map(Op::Append),
            3 => Just(Op::Sync),
            1 => (0usize..30000).prop_map(Op::Truncate),
            1 => Just(Op::Reopen),
            1 => Just(Op::Release),
        ]
    }

    fn open(path: &Path, direct: bool) -> SegmentFile {
        let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
        if direct {
            SegmentFile::direct(path).unwrap()
        } else {
            SegmentFile::buffered(path, file)
        }
    }

    /// Runs `ops` against a segment of `prealloc` zeros and checks after every sync
    /// that the file holds what was appended, followed only by zeros.
    fn check(ops: &[Op], direct: bool, prealloc: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        std::fs::write(&path, vec![0u8; prealloc]).unwrap();
        if direct && SegmentFile::direct(&path).is_err() {
            eprintln!("skipped: {} does not support O_DIRECT", dir.path().display());
            return;
        }
        let mut f = open(&path, direct);
        let mut model: Vec<u8> = Vec::new();
        let mut synced = 0usize;
        let mut n = 0u8;
        for op in ops {
            match op {
                Op::Append(len) => {
                    let bytes: Vec<u8> = (0..*len)
                        .map(|_| {
                            n = n.wrapping_add(1).max(1);
                            n
                        })
                        .collect();
                    f.append(model.len() as u64, &bytes).unwrap();
                    model.extend_from_slice(&bytes);
                }
                Op::Sync => {
                    f.sync().unwrap();
                    synced = model.len();
                    let on_disk = std::fs::read(&path).unwrap();
                    assert!(on_disk.len() >= model.len(), "file shorter than what was synced");
                    assert_eq!(&on_disk[..model.len()], &model[..], "synced bytes differ");
                    assert!(on_disk[model.len()..].iter().all(|b| *b == 0), "non-zero bytes after the records");
                }
                Op::Truncate(at) => {
                    f.sync().unwrap();
                    let at = (*at).min(model.len());
                    f.truncate(at as u64).unwrap();
                    model.truncate(at);
                    synced = at;
                    assert_eq!(std::fs::read(&path).unwrap(), model);
                }
                Op::Release => f.release_buffer(),
                Op::Reopen => {
                    drop(f);
                    model.truncate(synced.min(model.len()));
                    let on_disk = std::fs::read(&path).unwrap();
                    // Unsynced direct appends never reached the file; buffered ones may have.
                    let keep = on_disk.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1).max(synced);
                    model = on_disk[..keep.min(on_disk.len())].to_vec();
                    f = open(&path, direct);
                }
            }
        }
    }

    #[test]
    fn only_preallocated_segments_are_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let growing = dir.path().join("growing.wal");
        let preallocated = dir.path().join("preallocated.wal");
        std::fs::write(&growing, vec![1u8; 100]).unwrap();
        std::fs::write(&preallocated, vec![0u8; SEGMENT_TARGET_BYTES as usize]).unwrap();
        let open = |path: &Path| SegmentFile::open(path, OpenOptions::new().read(true).write(true).open(path).unwrap());
        assert!(!open(&growing).is_direct());
        if SegmentFile::direct(&preallocated).is_ok() {
            assert!(open(&preallocated).is_direct());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn direct_segments_hold_exactly_what_was_appended(ops in proptest::collection::vec(op(), 1..40), prealloc in prop_oneof![Just(0usize), Just(1 << 16)]) {
            check(&ops, true, prealloc);
        }

        #[test]
        fn buffered_segments_hold_exactly_what_was_appended(ops in proptest::collection::vec(op(), 1..40), prealloc in prop_oneof![Just(0usize), Just(1 << 16)]) {
            check(&ops, false, prealloc);
        }
    }
}
