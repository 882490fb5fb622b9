//! Shipping a RocksDB checkpoint: every regular file of the directory, in chunks of
//! [`CHUNK_BYTES`], each with a CRC-32 the receiver checks.

use std::path::Path;

use strake_proto::strakepb::FileChunk;

/// Bytes per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Calls `send` with every chunk of every regular file of `dir`, in name order,
/// reading one chunk at a time (empty files yield one empty chunk). Stops early when
/// `send` returns `false`.
pub fn for_each_chunk(dir: &Path, mut send: impl FnMut(FileChunk) -> bool) -> std::io::Result<()> {
    use std::io::Read;
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    for name in names {
        let mut file = std::fs::File::open(dir.join(&name))?;
        let mut offset = 0u64;
        loop {
            let mut buf = Vec::with_capacity(CHUNK_BYTES);
            (&mut file).take(CHUNK_BYTES as u64).read_to_end(&mut buf)?;
            if buf.is_empty() && offset > 0 {
                break;
            }
            let len = buf.len();
            let chunk = FileChunk { name: name.clone(), offset, crc32: crc32fast::hash(&buf), data: buf.into() };
            if !send(chunk) {
                return Ok(());
            }
            offset += len as u64;
            if len < CHUNK_BYTES {
                break;
            }
        }
    }
    Ok(())
}

/// Why a received chunk is refused.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The name would escape the directory.
    #[error("snapshot file name {0:?} is not a plain file name")]
    BadName(String),
    /// The checksum does not match.
    #[error("snapshot chunk of {name} at offset {offset} has a bad checksum")]
    Checksum {
        /// File.
        name: String,
        /// Offset.
        offset: u64,
    },
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes one received chunk into `dir`.
pub fn write_chunk(dir: &Path, chunk: &FileChunk) -> Result<(), ChunkError> {
    use std::os::unix::fs::FileExt;
    let name = &chunk.name;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ChunkError::BadName(name.clone()));
    }
    if crc32fast::hash(&chunk.data) != chunk.crc32 {
        return Err(ChunkError::Checksum { name: name.clone(), offset: chunk.offset });
    }
    let file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(dir.join(name))?;
    file.write_all_at(&chunk.data, chunk.offset)?;
    Ok(())
}

/// Makes every file of a received directory durable.
pub fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_checksums_are_checked() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), vec![7u8; CHUNK_BYTES + 10]).unwrap();
        std::fs::write(src.path().join("empty"), b"").unwrap();
        let mut chunks = Vec::new();
        for_each_chunk(src.path(), |c| {
            chunks.push(c);
            true
        })
        .unwrap();
        assert_eq!(chunks.len(), 3);
        let dst = tempfile::tempdir().unwrap();
        for c in &chunks {
            write_chunk(dst.path(), c).unwrap();
        }
        assert_eq!(std::fs::read(dst.path().join("a")).unwrap(), vec![7u8; CHUNK_BYTES + 10]);
        assert!(dst.path().join("empty").exists());
        let mut bad = chunks[0].clone();
        bad.crc32 ^= 1;
        assert!(matches!(write_chunk(dst.path(), &bad), Err(ChunkError::Checksum { .. })));
        let mut evil = chunks[0].clone();
        evil.name = "../x".into();
        assert!(matches!(write_chunk(dst.path(), &evil), Err(ChunkError::BadName(_))));
    }
}
