//! The crash test's child process: appends to the store at `PATH` from
//! `THREADS` threads until it is killed, each append together with a state
//! row in the same transaction, and prints `ack <account> <seq> <hash>` for
//! every append the store reported durable (plus `checkpoint <time>` for
//! checkpoints). It prints `ready` once the store is open.
//!
//! Usage: `append_child PATH THREADS SEED`

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use chaperone_store::{ActorRef, DecisionRecord, RecordDraft, Store, StoreError, Verdict};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, threads, seed] = args.as_slice() else {
        eprintln!("usage: append_child PATH THREADS SEED");
        return ExitCode::from(2);
    };
    let (Ok(threads), Ok(seed)) = (threads.parse::<u64>(), seed.parse::<u64>()) else {
        eprintln!("THREADS and SEED are numbers");
        return ExitCode::from(2);
    };
    let store = match Store::open(path) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("cannot open the store: {e}");
            return ExitCode::from(3);
        }
    };
    let created = store.write(|tx| {
        tx.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS crash_state (
                 account TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (account, seq))",
        )
    });
    if let Err(e) = created {
        eprintln!("cannot create the state table: {e}");
        return ExitCode::from(3);
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    if !say(&out, "ready") {
        return ExitCode::SUCCESS;
    }
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let out = Arc::clone(&out);
            std::thread::spawn(move || run(&store, &out, t, seed))
        })
        .collect();
    for worker in workers {
        if !matches!(worker.join(), Ok(true)) {
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}

/// Prints one line and flushes it; false once the parent has gone.
fn say(out: &Mutex<std::io::Stdout>, line: &str) -> bool {
    let mut out = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Appends until the process dies; false on a store error.
fn run(store: &Store, out: &Mutex<std::io::Stdout>, thread: u64, seed: u64) -> bool {
    for n in 0_u64.. {
        let account = format!("crash-{}", (seed + thread + n) % 5);
        let time_ms = 1_700_000_000_000 + i64::try_from(n).unwrap_or(0);
        let padding = "x".repeat(usize::try_from((seed * 31 + n * 7) % 300).unwrap_or(0));
        let draft = RecordDraft {
            account: account.clone(),
            time_ms,
            kind: "act".into(),
            actor: Some(ActorRef::Agent {
                email: format!("agent{thread}@vendor.test"),
            }),
            request: json!({"action": {"name": "orders.read"}, "n": n, "padding": padding}),
            decision: Some(DecisionRecord {
                verdict: Verdict::Allow,
                rule: "XEN-RIGHTS".into(),
                message: "allowed".into(),
                rules: vec!["XEN-RIGHTS".into()],
            }),
            effects: json!([]),
            policy: None,
            input: Some(json!({"now": time_ms})),
        };
        let result = store.write(move |tx| {
            let appended = tx.append(&draft)?;
            tx.conn().execute(
                "INSERT INTO crash_state (account, seq) VALUES (?1, ?2)",
                rusqlite_params(&account, appended.seq.to_i64()),
            )?;
            Ok::<_, StoreError>((account, appended))
        });
        let line = match result {
            Ok((account, appended)) => format!("ack {account} {} {}", appended.seq, appended.hash),
            Err(e) => {
                eprintln!("append failed: {e}");
                return false;
            }
        };
        if !say(out, &line) {
            return true;
        }
        if thread == 0 && n % 50 == 49 {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            match store.checkpoint(now_ms) {
                Ok(cp) => {
                    if !say(out, &format!("checkpoint {}", cp.time_ms)) {
                        return true;
                    }
                }
                Err(e) => {
                    eprintln!("checkpoint failed: {e}");
                    return false;
                }
            }
        }
    }
    true
}

fn rusqlite_params(account: &str, seq: i64) -> (String, i64) {
    (account.to_owned(), seq)
}
