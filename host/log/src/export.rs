//! Exporting one account's chain as JSON Lines, and verifying an export
//! offline, with nothing but the file and the log's public key
//! (`docs/audit-format.md`, "Export").
//!
//! ```text
//! {"type":"header","format":"chaperone-audit-export","version":2,"account":"acme","records":2}
//! {"type":"record","seq":1,"hash":"<hex>","bytes":"<base64>","record":{...the bytes as JSON...}}
//! {"type":"record","seq":2,...}
//! {"type":"checkpoint","note":"<the latest signed checkpoint>"}
//! {"type":"proof","head":"head acme 2 <hex>","leaf_index":0,"tree_size":3,"path":["<hex>",...]}
//! ```
//!
//! The checkpoint's note names no account; the proof line carries the
//! account's own head line and its inclusion proof against the note's root.

use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::chain::{ChainHash, ChainHead, Seq};
use super::checkpoint::{Checkpoint, NoteVersion};
use super::heads::{HeadProof, parse_head_line};
use super::keys::Verifier;
use super::merkle::{InclusionProof, LeafIndex, TreeHash, TreeSize};
use super::verify::{
    ChainStart, Failure, Problem, RawRow, Report, VerifyError, check_chain, open_checkpoint,
};

/// The `format` of an export's header line.
pub const EXPORT_FORMAT: &str = "chaperone-audit-export";

/// The export format version: 2, whose checkpoint names no account and
/// whose proof line carries the account's head. Version 1 (a checkpoint
/// listing every account's head) is not read.
pub const EXPORT_VERSION: u64 = 2;

/// How deep an export line's JSON may nest: a record line holds a record
/// (at most [`crate::record::MAX_RECORD_DEPTH`] levels) one level down.
const MAX_LINE_DEPTH: usize = crate::record::MAX_RECORD_DEPTH + 1;

/// The export's first line: `{"type":"header","format":...,"version":2,
/// "account":A,"records":N}` (members in this order, no newline).
pub fn header_line(account: &str, records: u64) -> String {
    let mut out = Vec::with_capacity(96 + account.len());
    out.extend_from_slice(b"{\"type\":\"header\",\"format\":");
    crate::record::write_str(&mut out, EXPORT_FORMAT);
    out.extend_from_slice(format!(",\"version\":{EXPORT_VERSION},\"account\":").as_bytes());
    crate::record::write_str(&mut out, account);
    out.extend_from_slice(format!(",\"records\":{records}}}").as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends one record line to `out`, newline included:
/// `{"type":"record","seq":S,"hash":HEX,"bytes":BASE64,"record":R}`, where
/// `R` is the bytes themselves when they are JSON on one line, nested at most
/// 64 levels deep (always, for a record the log wrote), else `null`.
pub fn push_record_line(out: &mut Vec<u8>, seq: i64, hash: &[u8], bytes: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"record\",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(hex::encode(hash).as_bytes());
    out.extend_from_slice(b"\",\"bytes\":\"");
    out.extend_from_slice(BASE64.encode(bytes).as_bytes());
    out.extend_from_slice(b"\",\"record\":");
    // The record's bytes are JSON: embed them as they are. Bytes that are
    // not (only in a tampered store) are left out, so that the line stays
    // readable and the export gets the verdict the store gets.
    let embeddable =
        !bytes.contains(&b'\n') && crate::json::is_json(bytes, crate::record::MAX_RECORD_DEPTH);
    if embeddable {
        out.extend_from_slice(bytes);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b"}\n");
}

/// The checkpoint line: `{"type":"checkpoint","note":NOTE}` (no newline).
pub fn checkpoint_line(note: &str) -> String {
    let mut out = Vec::with_capacity(40 + note.len());
    out.extend_from_slice(b"{\"type\":\"checkpoint\",\"note\":");
    crate::record::write_str(&mut out, note);
    out.push(b'}');
    String::from_utf8_lossy(&out).into_owned()
}

/// The proof line of an account's head:
/// `{"type":"proof","head":"head A S HEX","leaf_index":M,"tree_size":T,
/// "path":[HEX,...]}` (no newline).
pub fn proof_line(proof: &HeadProof) -> String {
    let line = proof.line();
    let mut out = Vec::with_capacity(96 + line.len() + 67 * proof.proof.path.len());
    out.extend_from_slice(b"{\"type\":\"proof\",\"head\":");
    crate::record::write_str(&mut out, &line);
    out.extend_from_slice(
        format!(
            ",\"leaf_index\":{},\"tree_size\":{},\"path\":[",
            proof.proof.index.0, proof.proof.size.0
        )
        .as_bytes(),
    );
    for (i, hash) in proof.proof.path.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(hash.to_hex().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"]}");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads an export's lines: the record lines as rows for the chain check,
/// the lines after them kept for later.
struct ExportLines<R> {
    lines: std::io::Lines<R>,
    line_no: u64,
    records: u64,
    trailer: Vec<Value>,
    done: bool,
}

impl<R: BufRead> ExportLines<R> {
    fn next_value(&mut self) -> Option<Result<Value, VerifyError>> {
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(VerifyError::Io(e))),
            };
            self.line_no += 1;
            // Skipped: empty lines and lines of JSON whitespace only.
            if line
                .bytes()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                continue;
            }
            let value: Value = match serde_json::from_str(&line) {
                Ok(value) => value,
                Err(e) => {
                    return Some(Err(VerifyError::Export(format!(
                        "line {} is not JSON: {e}",
                        self.line_no
                    ))));
                }
            };
            if crate::json::depth(&value, MAX_LINE_DEPTH) > MAX_LINE_DEPTH {
                return Some(Err(VerifyError::Export(format!(
                    "line {} nests deeper than {MAX_LINE_DEPTH} levels",
                    self.line_no
                ))));
            }
            // What serde_json lets through and the format's JSON does not
            // (Conventions): a member name given twice.
            if !crate::json::is_json(line.as_bytes(), MAX_LINE_DEPTH) {
                return Some(Err(VerifyError::Export(format!(
                    "line {} is not JSON: an object has two members of the same name",
                    self.line_no
                ))));
            }
            return Some(Ok(value));
        }
    }

    fn record(&self, value: &Value) -> Result<RawRow, VerifyError> {
        let bad = |what: &str| VerifyError::Export(format!("line {}: {what}", self.line_no));
        let seq = value
            .get("seq")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("a record line has no integer `seq`"))?;
        let hash = value
            .get("hash")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a record line has no `hash`"))?;
        let bytes = value
            .get("bytes")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a record line has no `bytes`"))?;
        Ok(RawRow {
            seq,
            hash: hex::decode(hash).unwrap_or_default(),
            bytes: BASE64
                .decode(bytes)
                .map_err(|_| bad("a record's `bytes` are not base64"))?,
            columns: None,
            decoded: Some(value.get("record").cloned().unwrap_or(Value::Null)),
        })
    }
}

impl<R: BufRead> Iterator for ExportLines<R> {
    type Item = Result<RawRow, VerifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let value = match self.next_value() {
            None => {
                self.done = true;
                return None;
            }
            Some(Err(e)) => return Some(Err(e)),
            Some(Ok(value)) => value,
        };
        if value.get("type").and_then(Value::as_str) == Some("record") {
            self.records += 1;
            Some(self.record(&value))
        } else {
            self.trailer.push(value);
            self.done = true;
            None
        }
    }
}

/// Verifies an export offline: the chain from its genesis, the record count
/// in the header, the checkpoint's signature (with `verifier`, which is
/// required even when there is no checkpoint), the account's head that the
/// proof line proves against the checkpoint's root, and the chain against
/// that head.
pub fn verify_export(
    reader: impl BufRead,
    verifier: Option<&Verifier>,
) -> Result<Report, VerifyError> {
    let verifier = verifier.ok_or(VerifyError::NoPublicKey)?;
    let mut lines = ExportLines {
        lines: reader.lines(),
        line_no: 0,
        records: 0,
        trailer: Vec::new(),
        done: false,
    };
    let header = lines
        .next_value()
        .transpose()?
        .ok_or_else(|| VerifyError::Export("the export is empty".into()))?;
    let header_field = |name: &str| header.get(name);
    if header_field("type").and_then(Value::as_str) != Some("header")
        || header_field("format").and_then(Value::as_str) != Some(EXPORT_FORMAT)
    {
        return Err(VerifyError::Export(
            "the first line is not a chaperone audit export header".into(),
        ));
    }
    let version = header_field("version");
    if version.and_then(Value::as_u64) != Some(EXPORT_VERSION) {
        let shown = version.map_or_else(|| "(none)".to_owned(), Value::to_string);
        return Err(VerifyError::UnsupportedVersion(shown));
    }
    let account = header_field("account")
        .and_then(Value::as_str)
        .filter(|a| crate::record::valid_account(a))
        .ok_or_else(|| VerifyError::Export("the header names no valid account id".into()))?
        .to_owned();
    let declared = header_field("records")
        .and_then(Value::as_u64)
        .ok_or_else(|| VerifyError::Export("the header has no record count".into()))?;

    let mut hashes: Vec<ChainHash> = Vec::new();
    let outcome = check_chain(
        &account,
        ChainStart::genesis(&account),
        &mut lines,
        |_, hash| hashes.push(*hash),
    )?;
    // Drain the rest (after a failure), counting records, keeping the trailer.
    while lines.next().transpose()?.is_some() {}
    while let Some(value) = lines.next_value().transpose()? {
        lines.trailer.push(value);
    }

    let mut report = Report {
        accounts: 1,
        records: outcome.valid_through,
        checkpoints: 0,
        failures: Vec::new(),
    };
    let mut found: Vec<(Seq, Problem)> = outcome.failure.iter().cloned().collect();
    let limit = outcome.failure.as_ref().map_or(u64::MAX, |(s, _)| s.get());
    let after = Seq::new(outcome.valid_through + 1).unwrap_or(Seq::FIRST);
    if outcome.failure.is_none() {
        if lines.records < declared {
            found.push((
                after,
                Problem::Truncated {
                    expected: Seq::new(declared).unwrap_or(after),
                    evidence: "the export's header".into(),
                },
            ));
        } else if lines.records > declared {
            found.push((
                Seq::new(declared + 1).unwrap_or(after),
                Problem::HeadMismatch {
                    detail: format!("the export's header counts {declared} records"),
                },
            ));
        }
    }

    let mut checkpoint_note = None;
    let mut proof_line = None;
    for value in std::mem::take(&mut lines.trailer) {
        match value.get("type").and_then(Value::as_str) {
            Some("checkpoint") if checkpoint_note.is_none() => {
                let note = value
                    .get("note")
                    .and_then(Value::as_str)
                    .ok_or_else(|| VerifyError::Export("a checkpoint line has no note".into()))?;
                checkpoint_note = Some(note.to_owned());
            }
            Some("proof") if proof_line.is_none() => proof_line = Some(value),
            Some("record") => {
                return Err(VerifyError::Export(
                    "a record line comes after the checkpoint".into(),
                ));
            }
            _ => {
                return Err(VerifyError::Export(
                    "an unexpected line follows the records".into(),
                ));
            }
        }
    }

    let label = "the export's checkpoint".to_owned();
    if let Some(note) = checkpoint_note {
        if let Some(cp) = open_checkpoint(&label, &note, verifier, &mut report) {
            if cp.version != NoteVersion::V2 {
                report.failures.push(Failure {
                    account: None,
                    seq: None,
                    problem: Problem::BadCheckpoint {
                        checkpoint: label.clone(),
                        detail:
                            "a version 1 note (it lists every account's head) in a version 2 export"
                                .into(),
                    },
                });
            } else {
                match proven_head(&cp, &account, proof_line.as_ref()) {
                    Err(detail) => report.failures.push(Failure {
                        account: Some(account.clone()),
                        seq: None,
                        problem: Problem::BadProof { detail },
                    }),
                    Ok(head) if head.seq.get() < limit => {
                        if head.seq.get() > outcome.valid_through {
                            found.push((
                                after,
                                Problem::Truncated {
                                    expected: head.seq,
                                    evidence: label.clone(),
                                },
                            ));
                        } else {
                            let index = usize::try_from(head.seq.get() - 1).unwrap_or(usize::MAX);
                            if hashes.get(index) != Some(&head.hash) {
                                found.push((
                                    head.seq,
                                    Problem::CheckpointMismatch {
                                        checkpoint: label.clone(),
                                    },
                                ));
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
    } else if proof_line.is_some() {
        return Err(VerifyError::Export(
            "the export has a proof but no checkpoint".into(),
        ));
    }

    report.push_first_bad(account, found);
    Ok(report)
}

/// The account's head as the export's proof line proves it in the signed
/// tree of `cp` (step E5), or what is wrong with the proof line.
fn proven_head(cp: &Checkpoint, account: &str, line: Option<&Value>) -> Result<ChainHead, String> {
    let Some(line) = line else {
        return Err(
            "the export has a checkpoint but no inclusion proof of the account's head".into(),
        );
    };
    let Some((named, head)) = line
        .get("head")
        .and_then(Value::as_str)
        .and_then(parse_head_line)
    else {
        return Err("the proof line has no valid head line".into());
    };
    if named != account {
        return Err("the proven head is another account's".into());
    }
    let index = line.get("leaf_index").and_then(Value::as_u64);
    let size = line.get("tree_size").and_then(Value::as_u64);
    let path: Option<Vec<TreeHash>> = line.get("path").and_then(Value::as_array).and_then(|p| {
        p.iter()
            .map(|h| h.as_str().and_then(TreeHash::from_hex))
            .collect()
    });
    let (Some(index), Some(size), Some(path)) = (index, size, path) else {
        return Err("the proof line is malformed".into());
    };
    if size != cp.tree_size {
        return Err("the proof's tree size differs from the checkpoint's".into());
    }
    let proof = HeadProof {
        account: named,
        head,
        proof: InclusionProof {
            index: LeafIndex(index),
            size: TreeSize(size),
            path,
        },
    };
    proof.verify(&cp.root).map_err(|e| e.to_string())?;
    Ok(head)
}
