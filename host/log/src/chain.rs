//! Hash chains: sequence numbers, chain hashes, the genesis value and the link
//! function (`docs/audit-format.md`, "Chain hashing").

use std::fmt;

/// Domain-separation tag of an account's genesis value:
/// `genesis(account) = BLAKE3(GENESIS_TAG || account)`.
pub const GENESIS_TAG: &[u8] = b"chaperone audit v1 genesis\n";

/// Domain-separation tag of a chain link:
/// `hash_n = BLAKE3(RECORD_TAG || hash_{n-1} || bytes_n)`.
pub const RECORD_TAG: &[u8] = b"chaperone audit v1 record\n";

/// A record's position in its account's chain: 1 for the first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// The first record of every chain.
    pub const FIRST: Seq = Seq(1);

    /// A sequence number; `None` for 0 or a value SQLite cannot store.
    pub fn new(value: u64) -> Option<Seq> {
        (value >= 1 && i64::try_from(value).is_ok()).then_some(Seq(value))
    }

    /// From an SQLite integer; `None` if it is not a valid sequence number.
    pub fn from_i64(value: i64) -> Option<Seq> {
        u64::try_from(value).ok().and_then(Seq::new)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The number as SQLite stores it (always fits: see [`Seq::new`]).
    pub fn to_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// The next sequence number, or `None` past the largest.
    pub fn next(self) -> Option<Seq> {
        self.0.checked_add(1).and_then(Seq::new)
    }

    /// The previous sequence number, or `None` before the first.
    pub fn prev(self) -> Option<Seq> {
        Seq::new(self.0.wrapping_sub(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for Seq {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

blake3_hash_type!(
    /// The BLAKE3 hash of a chain after one of its records (or the genesis
    /// value before the first). Compared in constant time.
    ChainHash
);

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// The last record of a chain: its sequence number and the chain hash after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    /// The last record's sequence number.
    pub seq: Seq,
    /// The chain hash after it.
    pub hash: ChainHash,
}

/// The fixed value an account's chain starts from: `BLAKE3(GENESIS_TAG || account)`.
pub fn genesis(account: &str) -> ChainHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(GENESIS_TAG);
    hasher.update(account.as_bytes());
    ChainHash(*hasher.finalize().as_bytes())
}

/// The chain hash after a record: `BLAKE3(RECORD_TAG || prev || bytes)`.
pub fn link(prev: &ChainHash, bytes: &[u8]) -> ChainHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(RECORD_TAG);
    hasher.update(&prev.0);
    hasher.update(bytes);
    ChainHash(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_bounds() {
        assert_eq!(Seq::new(0), None);
        assert_eq!(Seq::new(1), Some(Seq::FIRST));
        assert_eq!(Seq::new(u64::MAX), None);
        assert_eq!(Seq::FIRST.prev(), None);
        assert_eq!(Seq::from_i64(-1), None);
        assert_eq!(Seq::from_i64(i64::MAX).and_then(Seq::next), None);
    }

    #[test]
    fn link_depends_on_every_input() {
        let g = genesis("acme");
        assert_ne!(g, genesis("acmf"));
        assert_ne!(link(&g, b"x"), link(&g, b"y"));
        assert_ne!(link(&g, b"x"), link(&genesis("other"), b"x"));
    }

    #[test]
    fn hex_round_trip() {
        let h = genesis("acme");
        assert_eq!(ChainHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ChainHash::from_hex("00"), None);
        assert_eq!(ChainHash::from_slice(&[0; 31]), None);
    }
}
