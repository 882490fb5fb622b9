//! Order-preserving ("memcomparable") encoding of user keys.
//!
//! RocksDB compares keys bytewise. The MVCC column family stores
//! `encode(user_key) ++ revision`, so `encode` must keep the order of user keys and
//! no encoding may be a prefix of another. The format: the key is cut into groups of
//! 8 bytes; each group is written padded with zeros to 8 bytes and followed by a
//! marker byte `0xFF - pad`, where `pad` is the number of padding bytes (0..=8).
//! A full group (marker 0xFF) is always followed by another group, so an 8-byte key
//! encodes as one full group plus one empty group (marker 0xF7).
//!
//! Example: `b"abc"` → `61 62 63 00 00 00 00 00 FA`.

const GROUP: usize = 8;
const MARKER_FULL: u8 = 0xFF;

/// Length of `encode(key)` for a key of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    (len / GROUP + 1) * (GROUP + 1)
}

/// Appends the memcomparable encoding of `key` to `out`.
pub fn encode_into(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(key.len()));
    let mut chunks = key.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(MARKER_FULL);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.push(MARKER_FULL - pad as u8);
}

/// The memcomparable encoding of `key`.
pub fn encode(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(key.len()));
    encode_into(key, &mut out);
    out
}

/// Decodes an encoded key that occupies exactly `buf`. `None` if the bytes are not a
/// valid encoding (wrong length, bad marker, non-zero padding).
pub fn decode(buf: &[u8]) -> Option<Vec<u8>> {
    if buf.is_empty() || !buf.len().is_multiple_of(GROUP + 1) {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() / (GROUP + 1) * GROUP);
    let groups = buf.len() / (GROUP + 1);
    for (i, group) in buf.chunks_exact(GROUP + 1).enumerate() {
        let marker = group[GROUP];
        let last = i + 1 == groups;
        if marker == MARKER_FULL {
            if last {
                return None;
            }
            out.extend_from_slice(&group[..GROUP]);
            continue;
        }
        let pad = (MARKER_FULL - marker) as usize;
        if !last || pad > GROUP {
            return None;
        }
        let (data, padding) = group[..GROUP].split_at(GROUP - pad);
        if padding.iter().any(|b| *b != 0) {
            return None;
        }
        out.extend_from_slice(data);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(encode(b"abc"), vec![0x61, 0x62, 0x63, 0, 0, 0, 0, 0, 0xFA]);
        assert_eq!(encode(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        assert_eq!(encode(b"12345678").len(), 18);
        assert_eq!(decode(&encode(b"12345678")).unwrap(), b"12345678");
        assert!(decode(&[1, 2, 3]).is_none());
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0xFF]).is_none());
    }

    proptest! {
        #[test]
        fn order_is_preserved(a in proptest::collection::vec(any::<u8>(), 0..20),
                              b in proptest::collection::vec(any::<u8>(), 0..20)) {
            prop_assert_eq!(a.cmp(&b), encode(&a).cmp(&encode(&b)));
        }

        #[test]
        fn round_trips_and_is_prefix_free(a in proptest::collection::vec(any::<u8>(), 0..20),
                                          b in proptest::collection::vec(any::<u8>(), 0..20)) {
            prop_assert_eq!(decode(&encode(&a)).unwrap(), a.clone());
            if a != b {
                prop_assert!(!encode(&b).starts_with(&encode(&a)));
            }
        }
    }
}
