//! Signed checkpoints: a C2SP signed note naming the log's origin, the
//! number of chains, the Merkle root over their heads and the time — and no
//! account (`docs/audit-format.md`, "Checkpoints").
//!
//! Version 2, the one written:
//!
//! ```text
//! <origin>
//! <tree size: the number of chains>
//! <base64 Merkle root>
//! version 2
//! time <milliseconds since the epoch>
//!
//! — <key name> <base64(key id || Ed25519 signature)>
//! ```
//!
//! The heads the root commits to stay in the store
//! ([`crate::heads::TreeHeads`]); an account's export carries its own head
//! and inclusion proof. Version 1 notes, which stores signed before, are
//! still read: they have no `version` line and list every head after `time`
//! (`head <account> <seq> <hex>`, sorted by account id).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signature;

use super::chain::ChainHead;
use super::heads::{LeafOrder, TreeHeads, parse_decimal, parse_head_line};
use super::keys::{Signer, Verifier};
use super::merkle::TreeHash;

/// The signature line's leading em dash and space (C2SP signed-note).
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The note version written: its `version` line's number.
pub const NOTE_VERSION: u64 = 2;

/// A checkpoint note's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteVersion {
    /// No `version` line; every head listed in the note.
    V1,
    /// `version 2`; no head in the note.
    V2,
}

/// A checkpoint: what its signed note says.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The log's origin (the signing key's name).
    pub origin: String,
    /// The note's version.
    pub version: NoteVersion,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The number of heads (chains) in its tree.
    pub tree_size: u64,
    /// The Merkle root over the heads.
    pub root: TreeHash,
    /// The heads a version 1 note lists (its tree's leaves, already checked
    /// against the root); `None` for version 2, whose heads the store keeps.
    pub listed: Option<TreeHeads>,
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
    /// A version 1 note's root does not match the head lines it lists.
    #[error("the Merkle root does not match the heads it names")]
    RootMismatch,
}

impl Checkpoint {
    /// Signs a version 2 checkpoint of the tree over `heads` at `time_ms`:
    /// the note names its size and root, and no account.
    pub fn sign(signer: &Signer, time_ms: i64, heads: &TreeHeads) -> Checkpoint {
        let reordered;
        let heads = match heads.order() {
            LeafOrder::LeafHash => heads,
            // A version 1 note's list: the same heads, in version 2 order
            // (one head per account already, so this cannot fail).
            LeafOrder::Account => {
                reordered = TreeHeads::new(heads.iter().map(|(a, h)| (a.to_owned(), h)).collect())
                    .unwrap_or_else(|_| heads.clone());
                &reordered
            }
        };
        let tree_size = heads.len() as u64;
        let root = heads.root();
        let text = format!(
            "{}\n{tree_size}\n{}\nversion {NOTE_VERSION}\ntime {time_ms}\n",
            signer.name(),
            BASE64.encode(root.as_bytes())
        );
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
            version: NoteVersion::V2,
            time_ms,
            tree_size,
            root,
            listed: None,
            note,
        }
    }

    /// Parses a note and checks it: a valid signature by `verifier`, its
    /// text of either version, an origin equal to the key's name, and (a
    /// version 1 note) a root that matches the heads it lists.
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
        let mut lines = text.lines().peekable();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| malformed("no origin line".into()))?;
        let tree_size: u64 = lines
            .next()
            .and_then(parse_decimal)
            .ok_or_else(|| malformed("no tree size line".into()))?;
        let root = lines
            .next()
            .and_then(|l| BASE64.decode(l).ok())
            .and_then(|b| TreeHash::from_slice(&b))
            .ok_or_else(|| malformed("no root line".into()))?;
        let version = match lines.peek().and_then(|l| l.strip_prefix("version ")) {
            None => NoteVersion::V1,
            Some(number) => {
                if parse_decimal::<u64>(number) != Some(NOTE_VERSION) {
                    return Err(malformed(format!(
                        "note version `{number}` is not supported (this verifier reads versions 1 and 2)"
                    )));
                }
                lines.next();
                NoteVersion::V2
            }
        };
        let time_ms = lines
            .next()
            .and_then(|l| l.strip_prefix("time "))
            .and_then(parse_time)
            .ok_or_else(|| malformed("no `time` line".into()))?;
        let listed = match version {
            NoteVersion::V2 => {
                if let Some(line) = lines.next() {
                    return Err(malformed(format!(
                        "a version 2 note ends at its `time` line, but `{line}` follows"
                    )));
                }
                None
            }
            NoteVersion::V1 => {
                let mut listed: Vec<(String, ChainHead)> = Vec::new();
                for (n, line) in lines.enumerate() {
                    // The line is not shown: it may name another account.
                    let head = parse_head_line(line)
                        .ok_or_else(|| malformed(format!("head line {} is not a head", n + 1)))?;
                    if let Some((last, _)) = listed.last()
                        && last.as_bytes() >= head.0.as_bytes()
                    {
                        return Err(malformed("the head lines are not sorted".into()));
                    }
                    listed.push(head);
                }
                if listed.len() as u64 != tree_size {
                    return Err(malformed(format!(
                        "the tree size is {tree_size} but there are {} head lines",
                        listed.len()
                    )));
                }
                let listed = TreeHeads::listed(listed)
                    .map_err(|_| malformed("an account has two head lines".into()))?;
                if listed.root() != root {
                    return Err(CheckpointError::RootMismatch);
                }
                Some(listed)
            }
        };
        Ok(Checkpoint {
            origin: origin.to_owned(),
            version,
            time_ms,
            tree_size,
            root,
            listed,
            note: note.to_owned(),
        })
    }
}

/// The time: canonical decimal from -(2^63) to 2^63 - 1; `-0` is refused.
fn parse_time(t: &str) -> Option<i64> {
    // The magnitude as u64: `-9223372036854775808` (i64::MIN) has no
    // positive i64.
    let digits = t.strip_prefix('-').unwrap_or(t);
    let magnitude = i128::from(parse_decimal::<u64>(digits)?);
    let value = match t.starts_with('-') {
        true if magnitude == 0 => return None,
        true => -magnitude,
        false => magnitude,
    };
    i64::try_from(value).ok()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use crate::chain::{Seq, genesis};
    use crate::heads::head_line;
    use crate::merkle;

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

    fn tree() -> TreeHeads {
        TreeHeads::new(heads()).unwrap()
    }

    /// A version 1 note, as stores signed them before: every head listed,
    /// sorted by account id, the root over them in that order.
    pub(crate) fn v1_note(
        signer: &Signer,
        time_ms: i64,
        heads: Vec<(String, ChainHead)>,
    ) -> String {
        let listed = TreeHeads::listed(heads).unwrap();
        let mut text = format!(
            "{}\n{}\n{}\ntime {time_ms}\n",
            signer.name(),
            listed.len(),
            BASE64.encode(listed.root().as_bytes())
        );
        for (account, head) in listed.iter() {
            text.push_str(&head_line(account, &head));
            text.push('\n');
        }
        let mut blob = signer.verifier().id().to_vec();
        blob.extend_from_slice(&signer.sign(text.as_bytes()).to_bytes());
        format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            signer.name(),
            BASE64.encode(&blob)
        )
    }

    #[test]
    fn sign_open_round_trip() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let cp = Checkpoint::sign(&signer, 1_700_000_000_000, &tree());
        assert!(
            cp.note.starts_with(&format!(
                "test/log\n3\n{}\nversion 2\ntime 1700000000000\n\n",
                BASE64.encode(tree().root().as_bytes())
            )),
            "{}",
            cp.note
        );
        let opened = Checkpoint::open(&cp.note, &signer.verifier()).unwrap();
        assert_eq!(opened, cp);
        assert_eq!(opened.version, NoteVersion::V2);
        assert_eq!(opened.listed, None);
        for account in ["acme", "globex", "initech"] {
            assert!(!cp.note.contains(account), "{}", cp.note);
            tree().proof(account).unwrap().verify(&opened.root).unwrap();
        }
    }

    #[test]
    fn a_version_1_note_still_opens_with_its_heads() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let note = v1_note(&signer, 5, heads());
        assert!(note.contains("\nhead acme 2 "), "{note}");
        let opened = Checkpoint::open(&note, &signer.verifier()).unwrap();
        assert_eq!(opened.version, NoteVersion::V1);
        assert_eq!(opened.tree_size, 3);
        let listed = opened.listed.unwrap();
        assert_eq!(listed.head("acme"), Some(heads()[1].1));
        assert_eq!(listed.iter().next().unwrap().0, "acme");
        // A version 1 tree is ordered by account id: another root.
        assert_ne!(listed.root(), tree().root());
        let leaf = merkle::leaf_hash(head_line("globex", &heads()[0].1).as_bytes());
        let proof = listed.proof("globex").unwrap();
        merkle::verify_inclusion(&leaf, &proof.proof, &opened.root).unwrap();
        // Signing its heads again writes a version 2 note of the same tree
        // in version 2 order.
        let again = Checkpoint::sign(&signer, 6, &listed);
        assert_eq!(again.root, tree().root());
    }

    /// Every time a checkpoint can be signed at opens again (found by the
    /// `export` fuzz target: `time -9223372036854775808` did not parse).
    #[test]
    fn every_time_round_trips() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        for time in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            let cp = Checkpoint::sign(&signer, time, &tree());
            assert_eq!(Checkpoint::open(&cp.note, &signer.verifier()).unwrap(), cp);
            let v1 = v1_note(&signer, time, heads());
            assert_eq!(
                Checkpoint::open(&v1, &signer.verifier()).unwrap().time_ms,
                time
            );
        }
    }

    #[test]
    fn a_signature_line_ending_in_a_carriage_return_is_not_valid() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let cp = Checkpoint::sign(&signer, 5, &tree());
        let with_cr = format!("{}\r\n", cp.note.strip_suffix('\n').unwrap());
        assert!(matches!(
            Checkpoint::open(&with_cr, &signer.verifier()),
            Err(CheckpointError::BadSignature(_))
        ));
        // A second, valid line still signs it.
        let both = format!("{with_cr}{}", cp.note.rsplit_once("\n\n").unwrap().1);
        assert!(Checkpoint::open(&both, &signer.verifier()).is_ok());
    }

    /// Signs `text` as a note of `signer`.
    fn signed(signer: &Signer, text: &str) -> String {
        let mut blob = signer.verifier().id().to_vec();
        blob.extend_from_slice(&signer.sign(text.as_bytes()).to_bytes());
        format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            signer.name(),
            BASE64.encode(&blob)
        )
    }

    #[test]
    fn tampered_or_misshapen_notes_fail() {
        let signer = Signer::from_seed("test/log", [3; 32]).unwrap();
        let cp = Checkpoint::sign(&signer, 5, &tree());
        let changed = cp.note.replace("time 5", "time 6");
        assert!(matches!(
            Checkpoint::open(&changed, &signer.verifier()),
            Err(CheckpointError::BadSignature(_))
        ));
        let other = Signer::from_seed("test/log", [4; 32]).unwrap();
        assert!(Checkpoint::open(&cp.note, &other.verifier()).is_err());
        let empty = Checkpoint::sign(&signer, -1, &TreeHeads::new(Vec::new()).unwrap());
        let opened = Checkpoint::open(&empty.note, &signer.verifier()).unwrap();
        assert_eq!((opened.time_ms, opened.tree_size), (-1, 0));

        // Validly signed, but not a checkpoint of either version.
        let root = BASE64.encode(tree().root().as_bytes());
        let line = head_line("acme", &heads()[1].1);
        for text in [
            format!("test/log\n3\n{root}\nversion 3\ntime 5\n"),
            format!("test/log\n3\n{root}\nversion 02\ntime 5\n"),
            format!("test/log\n3\n{root}\ntime 5\nversion 2\n"),
            format!("test/log\n3\n{root}\nversion 2\ntime 5\n{line}\n"),
            format!("test/log\n3\n{root}\nversion 2\ntime -0\n"),
            format!("test/log\n3\n{root}\nversion 2\n"),
        ] {
            let result = Checkpoint::open(&signed(&signer, &text), &signer.verifier());
            assert!(
                matches!(result, Err(CheckpointError::Malformed(_))),
                "{text}: {result:?}"
            );
        }
        // A version 1 note whose root is not its heads'.
        let text = format!("test/log\n1\n{root}\ntime 5\n{line}\n");
        assert_eq!(
            Checkpoint::open(&signed(&signer, &text), &signer.verifier()),
            Err(CheckpointError::RootMismatch)
        );
    }
}
