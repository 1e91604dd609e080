//! Exporting one account's chain as JSON Lines, and verifying an export
//! offline, with nothing but the file and the log's public key
//! (`docs/audit-format.md`, "Export").
//!
//! ```text
//! {"type":"header","format":"chaperone-audit-export","version":1,"account":"acme","records":2}
//! {"type":"record","seq":1,"hash":"<hex>","bytes":"<base64>","record":{...the bytes as JSON...}}
//! {"type":"record","seq":2,...}
//! {"type":"checkpoint","note":"<the latest signed checkpoint>"}
//! {"type":"proof","account":"acme","leaf_index":0,"tree_size":3,"path":["<hex>",...]}
//! ```

use std::io::{BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::Connection;
use serde_json::{Value, json};

use super::chain::{ChainHash, Seq};
use super::checkpoint::{self, Checkpoint};
use super::keys::Verifier;
use super::merkle::{self, InclusionProof, LeafIndex, TreeHash, TreeSize};
use super::verify::{
    ChainStart, Failure, Problem, RawRow, Report, VerifyError, check_chain, open_checkpoint,
};

/// The `format` of an export's header line.
pub const EXPORT_FORMAT: &str = "chaperone-audit-export";

/// The export format version.
pub const EXPORT_VERSION: u64 = 1;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Record lines written.
    pub records: u64,
    /// Whether a checkpoint line was written.
    pub checkpoint: bool,
    /// Whether an inclusion proof line was written.
    pub proof: bool,
}

/// Errors writing an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error("reading the store failed")]
    Query(#[from] rusqlite::Error),
    /// Writing the export failed.
    #[error("writing the export failed")]
    Write(#[from] std::io::Error),
}

/// Writes `account`'s chain, the latest checkpoint and the inclusion proof of
/// the account's head in it, from one consistent read of the store. Records
/// are written as stored, whatever their state. `progress` is called with
/// the number of records written so far, every 4096 records.
pub fn export(
    conn: &Connection,
    account: &str,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<ExportSummary, ExportError> {
    super::read::in_snapshot(conn, || export_in_tx(conn, account, out, progress))
}

fn export_in_tx(
    conn: &Connection,
    account: &str,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<ExportSummary, ExportError> {
    let count = super::read::count(conn, Some(account))?;
    let header = json!({
        "type": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "account": account,
        "records": count,
    });
    writeln!(out, "{header}")?;

    let mut summary = ExportSummary {
        records: 0,
        checkpoint: false,
        proof: false,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT seq, hash, bytes FROM audit_records WHERE account = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([account])?;
    let mut line = Vec::with_capacity(4096);
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let hash = blob(row.get_ref(1)?);
        let bytes = blob(row.get_ref(2)?);
        line.clear();
        line.extend_from_slice(b"{\"type\":\"record\",\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hex::encode(hash).as_bytes());
        line.extend_from_slice(b"\",\"bytes\":\"");
        line.extend_from_slice(BASE64.encode(bytes).as_bytes());
        line.extend_from_slice(b"\",\"record\":");
        // The record's bytes are JSON: embed them as they are.
        let embeddable = !bytes.contains(&b'\n')
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if embeddable {
            line.extend_from_slice(bytes);
        } else {
            line.extend_from_slice(b"null");
        }
        line.extend_from_slice(b"}\n");
        out.write_all(&line)?;
        summary.records += 1;
        if summary.records.is_multiple_of(4096) {
            progress(summary.records);
        }
    }
    progress(summary.records);

    if let Some(stored) = checkpoint::latest(conn)? {
        writeln!(
            out,
            "{}",
            json!({"type": "checkpoint", "note": stored.note})
        )?;
        summary.checkpoint = true;
        if let Ok(cp) = Checkpoint::parse_unverified(&stored.note)
            && let Some(proof) = cp.inclusion_proof(account)
        {
            let path: Vec<String> = proof.path.iter().map(TreeHash::to_hex).collect();
            let line = json!({
                "type": "proof",
                "account": account,
                "leaf_index": proof.index.0,
                "tree_size": proof.size.0,
                "path": path,
            });
            writeln!(out, "{line}")?;
            summary.proof = true;
        }
    }
    out.flush()?;
    Ok(summary)
}

fn blob(value: rusqlite::types::ValueRef<'_>) -> &[u8] {
    match value {
        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b,
        _ => &[],
    }
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
            if line.trim().is_empty() {
                continue;
            }
            return Some(serde_json::from_str(&line).map_err(|e| {
                VerifyError::Export(format!("line {} is not JSON: {e}", self.line_no))
            }));
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
/// in the header, the checkpoint's signature (with `verifier`), the account's
/// head in it, and the inclusion proof of that head.
pub fn verify_export(
    reader: impl BufRead,
    verifier: Option<&Verifier>,
) -> Result<Report, VerifyError> {
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
    if header_field("version").and_then(Value::as_u64) != Some(EXPORT_VERSION) {
        return Err(VerifyError::Export(
            "the export's version is not supported".into(),
        ));
    }
    let account = header_field("account")
        .and_then(Value::as_str)
        .ok_or_else(|| VerifyError::Export("the header names no account".into()))?
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
        let verifier = verifier.ok_or(VerifyError::NoPublicKey)?;
        if let Some(cp) = open_checkpoint(&label, &note, verifier, &mut report) {
            match cp.head(&account) {
                Some(head) if head.seq.get() < limit => {
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
                _ => {}
            }
            if let Some(detail) = proof_problem(&cp, &account, proof_line.as_ref()) {
                report.failures.push(Failure {
                    account: Some(account.clone()),
                    seq: None,
                    problem: Problem::BadProof { detail },
                });
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

/// What is wrong with the export's inclusion proof of the account's head, if
/// anything.
fn proof_problem(cp: &Checkpoint, account: &str, line: Option<&Value>) -> Option<String> {
    let Some(head) = cp.head(account) else {
        return line.map(|_| "the checkpoint names no head for the account".to_owned());
    };
    let Some(line) = line else {
        return Some("the export has no inclusion proof of the account's head".into());
    };
    if line.get("account").and_then(Value::as_str) != Some(account) {
        return Some("the proof is for another account".into());
    }
    let index = line.get("leaf_index").and_then(Value::as_u64);
    let size = line.get("tree_size").and_then(Value::as_u64);
    let path: Option<Vec<TreeHash>> = line.get("path").and_then(Value::as_array).and_then(|p| {
        p.iter()
            .map(|h| h.as_str().and_then(TreeHash::from_hex))
            .collect()
    });
    let (Some(index), Some(size), Some(path)) = (index, size, path) else {
        return Some("the proof line is malformed".into());
    };
    if size != cp.heads.len() as u64 {
        return Some("the proof's tree size differs from the checkpoint's".into());
    }
    let proof = InclusionProof {
        index: LeafIndex(index),
        size: TreeSize(size),
        path,
    };
    let leaf = merkle::leaf_hash(checkpoint::head_line(account, &head).as_bytes());
    merkle::verify_inclusion(&leaf, &proof, &cp.root)
        .err()
        .map(|e| e.to_string())
}
