//! Key ranges as etcd expresses them: `key` plus `range_end`.

/// A set of keys: one key, `[start, end)`, or every key `>= start`.
///
/// From etcd's request fields: an empty `range_end` means the single key `key`;
/// `range_end == "\0"` means every key `>= key`; otherwise `[key, range_end)`
/// (empty when `range_end <= key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key.
    Single(Vec<u8>),
    /// `[start, end)`.
    Bounded {
        /// Inclusive start.
        start: Vec<u8>,
        /// Exclusive end.
        end: Vec<u8>,
    },
    /// Every key `>= start`.
    From(Vec<u8>),
}

impl KeyRange {
    /// Interprets etcd's `key` and `range_end` fields.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Bounded { start: key.to_vec(), end: end.to_vec() },
        }
    }

    /// The first key of the range.
    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Single(k) | KeyRange::From(k) => k,
            KeyRange::Bounded { start, .. } => start,
        }
    }

    /// The exclusive end, `None` when unbounded. A single key has no end here.
    pub fn end(&self) -> Option<&[u8]> {
        match self {
            KeyRange::Bounded { end, .. } => Some(end),
            _ => None,
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::Bounded { start, end } => start.as_slice() <= key && key < end.as_slice(),
            KeyRange::From(start) => start.as_slice() <= key,
        }
    }

    /// Whether the range holds no key at all (`end <= start`).
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Bounded { start, end } if end <= start)
    }

    /// Whether two ranges share a key.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        // [a_start, a_end) and [b_start, b_end) intersect iff a_start < b_end && b_start < a_end,
        // with a single key k as [k, k+"\0").
        let upper = |r: &KeyRange| -> Option<Vec<u8>> {
            match r {
                KeyRange::Single(k) => {
                    let mut e = k.clone();
                    e.push(0);
                    Some(e)
                }
                KeyRange::Bounded { end, .. } => Some(end.clone()),
                KeyRange::From(_) => None,
            }
        };
        let below = |start: &[u8], end: Option<Vec<u8>>| end.is_none_or(|e| start < e.as_slice());
        below(self.start(), upper(other)) && below(other.start(), upper(self))
    }
}

/// The end of the range of all keys with `prefix` ("key plus one"), as etcd clients
/// compute it; `[0]` (all keys) when the prefix is empty or all `0xff`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_forms() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a".to_vec()));
        assert!(KeyRange::new(b"a", b"b").contains(b"a\xff"));
        assert!(!KeyRange::new(b"a", b"b").contains(b"b"));
        assert!(KeyRange::new(b"b", b"a").is_empty());
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn intersections() {
        let single = KeyRange::new(b"k", b"");
        assert!(single.intersects(&KeyRange::new(b"a", b"z")));
        assert!(!single.intersects(&KeyRange::new(b"k\0", b"z")));
        assert!(single.intersects(&KeyRange::new(b"k", b"k\0")));
        assert!(KeyRange::new(b"a", b"\0").intersects(&KeyRange::new(b"x", b"")));
        assert!(!KeyRange::new(b"a", b"c").intersects(&KeyRange::new(b"c", b"d")));
    }
}
