//! Signed checkpoints: a C2SP signed note naming the log's origin, the time,
//! every chain head and the Merkle root over them (`docs/audit-format.md`,
//! "Checkpoints").
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 Merkle root>
//! time <milliseconds since the epoch>
//! head <account> <seq> <hex chain hash>      (one per account, sorted)
//!
//! — <key name> <base64(key id || Ed25519 signature)>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signature;

use super::chain::{ChainHash, ChainHead, Seq};
use super::keys::{Signer, Verifier};
use super::merkle::{self, InclusionProof, TreeHash};
use super::record::valid_account;

/// The signature line's leading em dash and space (C2SP signed-note).
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// A checkpoint of every chain head, with its signed note.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The log's origin (the signing key's name).
    pub origin: String,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Every account's head, sorted by account id (bytewise).
    pub heads: Vec<(String, ChainHead)>,
    /// The Merkle root over the head lines.
    pub root: TreeHash,
    /// The whole signed note, as written.
    pub note: String,
}

/// Why a checkpoint note is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note does not have the checkpoint layout.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The note has no valid signature by the expected key.
    #[error("no valid signature by key `{0}`")]
    BadSignature(String),
    /// The root line does not match the head lines.
    #[error("the Merkle root does not match the heads it names")]
    RootMismatch,
}

/// The leaf data of one head: its line in the note, without the newline.
pub fn head_line(account: &str, head: &ChainHead) -> String {
    format!("head {account} {} {}", head.seq, head.hash.to_hex())
}

fn leaves(heads: &[(String, ChainHead)]) -> Vec<TreeHash> {
    heads
        .iter()
        .map(|(account, head)| merkle::leaf_hash(head_line(account, head).as_bytes()))
        .collect()
}

/// The note text (without signatures) of a checkpoint.
fn body(origin: &str, time_ms: i64, heads: &[(String, ChainHead)], root: &TreeHash) -> String {
    let mut text = format!(
        "{origin}\n{}\n{}\ntime {time_ms}\n",
        heads.len(),
        BASE64.encode(root.as_bytes())
    );
    for (account, head) in heads {
        text.push_str(&head_line(account, head));
        text.push('\n');
    }
    text
}

impl Checkpoint {
    /// Signs a checkpoint of these heads (sorted here) at `time_ms`.
    pub fn sign(signer: &Signer, time_ms: i64, mut heads: Vec<(String, ChainHead)>) -> Checkpoint {
        heads.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let root = merkle::root(&leaves(&heads));
        let text = body(signer.name(), time_ms, &heads, &root);
        let signature = signer.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&signer.verifier().id());
        blob.extend_from_slice(&signature.to_bytes());
        let note = format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            signer.name(),
            BASE64.encode(&blob)
        );
        Checkpoint {
            origin: signer.name().to_owned(),
            time_ms,
            heads,
            root,
            note,
        }
    }

    /// Parses a note and checks it: a valid signature by `verifier`, an
    /// origin equal to the key's name, and a root that matches the heads.
    pub fn open(note: &str, verifier: &Verifier) -> Result<Checkpoint, CheckpointError> {
        let malformed = |what: &str| CheckpointError::Malformed(what.to_owned());
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let (text, signatures) = (
            note.get(..=split).unwrap_or_default(),
            note.get(split + 2..).unwrap_or_default(),
        );
        if !signatures.ends_with('\n') {
            return Err(malformed("the signature lines do not end with a newline"));
        }
        let mut signed = false;
        // Split at `\n` only: a `\r` stays in its line (and its base64).
        let lines = signatures.strip_suffix('\n').unwrap_or(signatures);
        for line in lines.split('\n') {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return Err(malformed("a signature line does not start with `— `"));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(malformed("a signature line has no signature"));
            };
            if name != verifier.name() {
                continue;
            }
            let Ok(blob) = BASE64.decode(blob) else {
                continue;
            };
            let Some((id, sig)) = blob.split_first_chunk::<4>() else {
                continue;
            };
            let Ok(sig) = Signature::from_slice(sig) else {
                continue;
            };
            if *id == verifier.id() && verifier.verify(text.as_bytes(), &sig) {
                signed = true;
            }
        }
        if !signed {
            return Err(CheckpointError::BadSignature(verifier.name().to_owned()));
        }
        let checkpoint = Checkpoint::parse_text(text, note)?;
        if checkpoint.origin != verifier.name() {
            return Err(malformed("the origin is not the signing key's name"));
        }
        Ok(checkpoint)
    }

    /// Parses a note without checking its signature (for tools that show or
    /// forward a checkpoint; never trust what it says).
    pub fn parse_unverified(note: &str) -> Result<Checkpoint, CheckpointError> {
        let split = note.rfind("\n\n").ok_or_else(|| {
            CheckpointError::Malformed("no blank line before the signatures".into())
        })?;
        Checkpoint::parse_text(note.get(..=split).unwrap_or_default(), note)
    }

    /// Parses the note text (no signature check).
    fn parse_text(text: &str, note: &str) -> Result<Checkpoint, CheckpointError> {
        let malformed = |what: String| CheckpointError::Malformed(what);
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("the note has control characters".into()));
        }
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| malformed("no origin line".into()))?;
        let size: usize = lines
            .next()
            .and_then(parse_decimal)
            .ok_or_else(|| malformed("no tree size line".into()))?;
        let root = lines
            .next()
            .and_then(|l| BASE64.decode(l).ok())
            .and_then(|b| TreeHash::from_slice(&b))
            .ok_or_else(|| malformed("no root line".into()))?;
        let time_ms = lines
            .next()
            .and_then(|l| l.strip_prefix("time "))
            .and_then(|t| {
                // The magnitude as u64: `-9223372036854775808` (i64::MIN)
                // has no positive i64.
                let digits = t.strip_prefix('-').unwrap_or(t);
                let magnitude = i128::from(parse_decimal::<u64>(digits)?);
                let value = match t.starts_with('-') {
                    true if magnitude == 0 => return None,
                    true => -magnitude,
                    false => magnitude,
                };
                i64::try_from(value).ok()
            })
            .ok_or_else(|| malformed("no `time` line".into()))?;
        let mut heads: Vec<(String, ChainHead)> = Vec::new();
        for line in lines {
            let head = parse_head_line(line)
                .ok_or_else(|| malformed(format!("bad head line `{line}`")))?;
            if let Some((last, _)) = heads.last()
                && last.as_bytes() >= head.0.as_bytes()
            {
                return Err(malformed("the head lines are not sorted".into()));
            }
            heads.push(head);
        }
        if heads.len() != size {
            return Err(malformed(format!(
                "the tree size is {size} but there are {} head lines",
                heads.len()
            )));
        }
        if merkle::root(&leaves(&heads)) != root {
            return Err(CheckpointError::RootMismatch);
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            time_ms,
            heads,
            root,
            note: note.to_owned(),
        })
    }

    /// The head this checkpoint names for `account`.
    pub fn head(&self, account: &str) -> Option<ChainHead> {
        self.position(account)
            .and_then(|i| self.heads.get(i))
            .map(|(_, head)| *head)
    }

    fn position(&self, account: &str) -> Option<usize> {
        self.heads
            .binary_search_by(|(a, _)| a.as_bytes().cmp(account.as_bytes()))
            .ok()
    }

    /// The inclusion proof of `account`'s head.
    pub fn inclusion_proof(&self, account: &str) -> Option<InclusionProof> {
        let index = self.position(account)?;
        merkle::inclusion_proof(&leaves(&self.heads), index)
    }
}

/// A decimal without sign, leading zeros (except `0` itself) or other text.
fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// `head <account> <seq> <hex>`.
pub fn parse_head_line(line: &str) -> Option<(String, ChainHead)> {
    let mut parts = line.split(' ');
    let (Some("head"), Some(account), Some(seq), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if !valid_account(account) || hash.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let seq = parse_decimal::<u64>(seq).and_then(Seq::new)?;
    let hash = ChainHash::from_hex(hash)?;
    Some((account.to_owned(), ChainHead { seq, hash }))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::chain::genesis;

    fn heads() -> Vec<(String, ChainHead)> {
        ["globex", "acme", "initech"]
            .iter()
            .enumerate()
            .map(|(i, a)| {
                (
                    (*a).to_owned(),
                    ChainHead {
                        seq: Seq::new(i as u64 + 1).unwrap(),
                        hash: genesis(a),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn sign_open_round_trip() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let cp = Checkpoint::sign(&signer, 1_700_000_000_000, heads());
        assert!(cp.note.starts_with("test/log\n3\n"));
        let opened = Checkpoint::open(&cp.note, &signer.verifier()).unwrap();
        assert_eq!(opened, cp);
        assert_eq!(opened.heads.first().unwrap().0, "acme");
        let proof = cp.inclusion_proof("globex").unwrap();
        let leaf = merkle::leaf_hash(head_line("globex", &cp.head("globex").unwrap()).as_bytes());
        merkle::verify_inclusion(&leaf, &proof, &cp.root).unwrap();
    }

    /// Every time a checkpoint can be signed at opens again (found by the
    /// `export` fuzz target: `time -9223372036854775808` did not parse).
    #[test]
    fn every_time_round_trips() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        for time in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            let cp = Checkpoint::sign(&signer, time, heads());
            assert_eq!(Checkpoint::open(&cp.note, &signer.verifier()).unwrap(), cp);
        }
    }

    #[test]
    fn a_signature_line_ending_in_a_carriage_return_is_not_valid() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let cp = Checkpoint::sign(&signer, 5, heads());
        let with_cr = format!("{}\r\n", cp.note.strip_suffix('\n').unwrap());
        assert!(matches!(
            Checkpoint::open(&with_cr, &signer.verifier()),
            Err(CheckpointError::BadSignature(_))
        ));
        // A second, valid line still signs it.
        let both = format!("{with_cr}{}", cp.note.rsplit_once("\n\n").unwrap().1);
        assert!(Checkpoint::open(&both, &signer.verifier()).is_ok());
    }

    #[test]
    fn tampered_notes_fail() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let cp = Checkpoint::sign(&signer, 5, heads());
        assert!(cp.note.contains("head acme 2 "));
        let changed = cp.note.replace("head acme 2", "head acme 3");
        assert!(matches!(
            Checkpoint::open(&changed, &signer.verifier()),
            Err(CheckpointError::BadSignature(_))
        ));
        let other = Signer::from_seed("test/log", [4; 32]).unwrap();
        assert!(Checkpoint::open(&cp.note, &other.verifier()).is_err());
        let empty = Checkpoint::sign(&signer, -1, Vec::new());
        let opened = Checkpoint::open(&empty.note, &signer.verifier()).unwrap();
        assert_eq!(opened.time_ms, -1);
        assert!(opened.heads.is_empty());
    }
}
