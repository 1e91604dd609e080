//! Audit log benchmark (prints figures; not a timed test).
//!
//! ```text
//! cargo bench -p chaperone --bench audit
//! ```
//!
//! 1. Durable appends per second through [`Store::write`] with group commit at
//!    `synchronous=FULL`, with 1, 8 and 64 concurrent appenders, each waiting
//!    for its own append to be durable before the next.
//! 2. Verified records per second over a store of 1M records (1000 chains),
//!    with the parallel fast path on every core, and with one thread.
//!
//! `AUDIT_BENCH_SECS` (default 3) sets each append run's length,
//! `AUDIT_BENCH_RECORDS` (default 1000000) the verify store's size,
//! `AUDIT_BENCH_APPENDERS` (default `1,8,64`) the append runs, and
//! `AUDIT_BENCH_ONLY` (`append` or `verify`) runs one part alone, and
//! `AUDIT_BENCH_VERIFY_DB` keeps the verify store at that path (built once,
//! reused while its record count matches), for profiling;
//! `AUDIT_BENCH_VERIFY_RUNS` (default 1) repeats each measured verify pass.
//!
//! On Linux it also prints CPU time (from `/proc`): the writer thread's for
//! appends, the process's for verification. On a shared machine the
//! per-CPU-second figures say what a dedicated core would do.

#![expect(clippy::unwrap_used, reason = "a benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaperone_store::verify::{self, VerifyOptions};
use chaperone_store::{
    ActorRef, DecisionRecord, PolicyRef, Prepared, RecordDraft, Store, StoreError, Verdict,
};
use serde_json::json;

/// The allocator the `chaperone` binary uses (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds (user + system) used so far by this process, or by its
/// threads with this name, from `/proc` (Linux; `None` elsewhere).
fn cpu_seconds(thread_name: Option<&str>) -> Option<f64> {
    fn ticks(stat: &str) -> Option<u64> {
        // Fields after the `(comm)`: state is 3rd, utime 14th, stime 15th.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split(' ').collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }
    let total = match thread_name {
        None => ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?,
        Some(name) => {
            let mut sum = 0;
            for task in std::fs::read_dir("/proc/self/task").ok()? {
                let dir = task.ok()?.path();
                let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                if comm.trim() == name {
                    sum += ticks(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
                }
            }
            sum
        }
    };
    // USER_HZ is 100 on Linux.
    Some(total as f64 / 100.0)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A typical `act` record: about 450 bytes once encoded.
fn draft(account: String, n: u64) -> RecordDraft {
    let time_ms = 1_700_000_000_000 + i64::try_from(n).unwrap();
    RecordDraft {
        account,
        time_ms,
        kind: "act".into(),
        actor: Some(ActorRef::Agent {
            email: "sam@vendor.test".into(),
        }),
        request: json!({"action": {"name": "orders.read", "environment": "prod", "integration": "shopify-netsuite"}}),
        decision: Some(DecisionRecord {
            verdict: Verdict::Allow,
            rule: "CEL-ACTION".into(),
            message: "monitor grants allow reads".into(),
            rules: vec!["CEL-ACTION".into()],
        }),
        effects: json!([]),
        policy: Some(PolicyRef {
            digest: "23adc8d9e204067a8cc8eca613d687e7344045e66a2f3ee1f1dd95e713bca8ca".into(),
            vendor: "celigo".into(),
            version: "0.1.0".into(),
        }),
        input: Some(json!({"now": time_ms, "operation": "act", "grants": ["g1"]})),
    }
}

fn appends(appenders: u64, seconds: u64) {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let store = Store::open(dir.path().join("bench.db")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..appenders)
        .map(|t| {
            let (store, stop, done) = (store.clone(), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // The caller encodes; the writer only hashes and inserts.
                    let d = Prepared::new(&draft(format!("acct-{}", (t * 7919 + n) % 1000), n))
                        .unwrap();
                    store
                        .write(move |tx| tx.append_prepared(&d).map(|_| ()))
                        .unwrap();
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let writer_before = cpu_seconds(Some("store-writer"));
    let process_before = cpu_seconds(None);
    std::thread::sleep(Duration::from_secs(seconds));
    let writer_after = cpu_seconds(Some("store-writer"));
    let process_after = cpu_seconds(None);
    let counted = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let count = done.load(Ordering::Relaxed);
    println!(
        "append  appenders={appenders:>2}  {count:>8} durable appends in {elapsed:.2} s = {:>9.0} appends/s",
        count as f64 / elapsed
    );
    if let (Some(before), Some(after)) = (writer_before, writer_after) {
        let busy = after - before;
        if busy > 0.0 {
            println!(
                "        writer thread on CPU {busy:.2} s of {seconds} s: {:.0} appends per writer CPU-second",
                counted as f64 / busy
            );
        }
    }
    if let (Some(before), Some(after)) = (process_before, process_after) {
        println!(
            "        whole process on CPU {:.2} s of {seconds} s (appenders included)",
            after - before
        );
    }
}

fn verify_bench(records: u64) {
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let path = match std::env::var_os("AUDIT_BENCH_VERIFY_DB") {
        Some(path) => std::path::PathBuf::from(path),
        None => dir.path().join("bench.db"),
    };
    if path.exists() {
        let store = Store::open(&path).unwrap();
        let count: i64 = store
            .read(|c| c.query_row("SELECT COUNT(*) FROM audit_records", [], |r| r.get(0)))
            .unwrap();
        drop(store);
        assert_eq!(
            u64::try_from(count).unwrap(),
            records,
            "{} holds another number of records",
            path.display()
        );
        println!("verify  reusing {}", path.display());
        return verify_run(&path, records);
    }
    let store = Store::open(&path).unwrap();
    let accounts = 1000;
    let build = Instant::now();
    let per_job = 10_000;
    let mut written = 0;
    while written < records {
        let from = written;
        let to = (written + per_job).min(records);
        store
            .write(move |tx| {
                for n in from..to {
                    tx.append(&draft(format!("acct-{}", n % accounts), n))?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        written = to;
    }
    store.checkpoint(1_800_000_000_000).unwrap();
    let bytes: i64 = store
        .read(|c| {
            c.query_row("SELECT SUM(length(bytes)) FROM audit_records", [], |r| {
                r.get(0)
            })
        })
        .unwrap();
    drop(store);
    println!(
        "verify  built {records} records ({} bytes each on average) in {accounts} chains in {:.1} s",
        bytes / i64::try_from(records).unwrap(),
        build.elapsed().as_secs_f64()
    );
    verify_run(&path, records);
}

fn verify_run(path: &std::path::Path, records: u64) {
    let options = VerifyOptions {
        verifier: Some(
            chaperone_log::keys::load_verifier(&chaperone_log::keys::public_key_path(path))
                .unwrap(),
        ),
        ..VerifyOptions::default()
    };
    for threads in [rayon::current_num_threads(), 1] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // One warm-up pass (page cache), then the measured ones.
        pool.install(|| verify::verify_store(path, &options).unwrap());
        for _ in 0..env("AUDIT_BENCH_VERIFY_RUNS", 1) {
            let cpu_before = cpu_seconds(None);
            let start = Instant::now();
            let report = pool.install(|| verify::verify_store(path, &options).unwrap());
            let elapsed = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds(None).zip(cpu_before).map(|(a, b)| a - b);
            assert!(report.is_ok() && report.records == records, "{report:?}");
            println!(
                "verify  threads={threads}  {} records in {elapsed:.3} s = {:>10.0} records/s",
                report.records,
                report.records as f64 / elapsed
            );
            if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
                println!(
                    "        {cpu:.2} CPU-seconds: {:.0} records per CPU-second",
                    report.records as f64 / cpu
                );
            }
        }
    }
}

fn main() {
    let seconds = env("AUDIT_BENCH_SECS", 3);
    let only = std::env::var("AUDIT_BENCH_ONLY").unwrap_or_default();
    if only != "verify" {
        let appenders = std::env::var("AUDIT_BENCH_APPENDERS").unwrap_or_else(|_| "1,8,64".into());
        for appenders in appenders.split(',') {
            appends(appenders.trim().parse().unwrap(), seconds);
        }
    }
    if only != "append" {
        verify_bench(env("AUDIT_BENCH_RECORDS", 1_000_000));
    }
}
