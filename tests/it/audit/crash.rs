//! Crash safety: a child process appending from several threads is killed
//! with SIGKILL at random moments; every append it was told was durable must
//! survive, with its state change, and every chain must verify.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chaperone_log::ChainHash;
use rusqlite::params;

use super::{Fixture, verify};

const ROUNDS: u64 = 24;

/// A small xorshift generator; the seed is printed so a failure can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn appends_acknowledged_before_a_sigkill_survive_it() {
    let fixture = Fixture::new();
    drop(fixture.store());
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut acked: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut killed_mid_write = 0;

    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_append_child"))
            .arg(&fixture.path)
            .arg("4")
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = received.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(ready, "ready");
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 120));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child ended by itself: {status}");
        reader.join().unwrap();

        let before = acked.len();
        for line in received.try_iter() {
            let mut parts = line.split(' ');
            if parts.next() == Some("ack") {
                let (Some(account), Some(seq), Some(hash)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    panic!("bad line `{line}`");
                };
                acked.insert((account.to_owned(), seq.parse().unwrap()), hash.to_owned());
            }
        }
        if acked.len() > before {
            killed_mid_write += 1;
        }

        // Verify first, read-only, as an auditor would right after a crash.
        let report = verify(&fixture.path);
        assert!(report.is_ok(), "round {round}: {report:#?}");

        let store = fixture.store();
        for ((account, seq), hash) in &acked {
            let stored: Vec<u8> = store
                .read(|c| {
                    c.query_row(
                        "SELECT hash FROM audit_records WHERE account = ?1 AND seq = ?2",
                        params![account, i64::try_from(*seq).unwrap()],
                        |row| row.get(0),
                    )
                })
                .unwrap_or_else(|e| panic!("round {round}: acked {account} {seq} is gone: {e}"));
            assert_eq!(&ChainHash::from_slice(&stored).unwrap().to_hex(), hash);
        }
        // Each record's state row committed with it, and nothing else did.
        let (records, state, joined): (i64, i64, i64) = store
            .read(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM audit_records),
                            (SELECT COUNT(*) FROM crash_state),
                            (SELECT COUNT(*) FROM crash_state s JOIN audit_records r
                               ON r.account = s.account AND r.seq = s.seq)",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
            })
            .unwrap();
        assert_eq!((records, state), (joined, joined), "round {round}");
        drop(store);
    }
    assert!(
        killed_mid_write >= ROUNDS / 2,
        "too few rounds were killed while appending"
    );
    assert!(
        acked.len() >= 200,
        "only {} acknowledged appends",
        acked.len()
    );
}
