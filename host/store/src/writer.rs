//! The single writer thread and its group commit.
//!
//! Jobs queue on a channel. The writer takes every job waiting (up to
//! [`MAX_BATCH`]), runs them one after another inside one `BEGIN IMMEDIATE`
//! transaction, each under its own `SAVEPOINT`, commits once (one fsync at
//! `synchronous=FULL`), and only then answers each job's caller. Jobs that
//! arrive while a batch commits form the next batch.
//!
//! Answering is handed to a second thread ([`answer`]): waking dozens of
//! blocked callers costs a futex wake each, and the writer can meanwhile
//! start the next batch. A caller still hears of its job only after the
//! batch that holds it has committed (or failed).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use rusqlite::Connection;

use super::{StoreError, WriteError, WriteTx};
use crate::append::HeadCache;

/// The most jobs in one transaction.
pub const MAX_BATCH: usize = 4096;

/// Batches up to this many jobs are answered by the writer itself: for so
/// few, the hand-over would cost more latency than the wake-ups.
const ANSWER_INLINE: usize = 16;

/// A queued job, with its caller's reply channel.
pub trait Job: Send {
    /// Runs the job (catching a panic).
    fn run(self: Box<Self>, tx: &mut WriteTx<'_>) -> Box<dyn Pending>;
    /// Answers the caller without running the job.
    fn abort(self: Box<Self>, error: StoreError);
}

/// A job that ran, waiting for its batch's outcome.
pub trait Pending: Send {
    /// Whether the job returned `Ok`.
    fn succeeded(&self) -> bool;
    /// Answers the caller.
    fn finish(self: Box<Self>, outcome: Completion);
}

/// What became of a job that ran.
pub enum Completion {
    /// Its batch committed durably.
    Committed,
    /// It changed rows without a successful append; its savepoint was rolled back.
    Unaudited,
    /// Its batch did not commit.
    Failed(StoreError),
}

/// A typed job and the channel its caller waits on.
pub struct WriteJob<F, T, E> {
    pub job: F,
    pub reply: SyncSender<Result<T, WriteError<E>>>,
}

impl<F, T, E> Job for WriteJob<F, T, E>
where
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut WriteTx<'_>) -> Box<dyn Pending> {
        let WriteJob { job, reply } = *self;
        let result = panic::catch_unwind(AssertUnwindSafe(|| job(tx))).ok();
        Box::new(Reply { result, reply })
    }

    fn abort(self: Box<Self>, error: StoreError) {
        // The caller may have gone away; nothing to do then.
        let _ = self.reply.send(Err(WriteError::Store(error)));
    }
}

struct Reply<T, E> {
    /// `None`: the job panicked.
    result: Option<Result<T, E>>,
    reply: SyncSender<Result<T, WriteError<E>>>,
}

impl<T: Send, E: Send> Pending for Reply<T, E> {
    fn succeeded(&self) -> bool {
        matches!(self.result, Some(Ok(_)))
    }

    fn finish(self: Box<Self>, outcome: Completion) {
        let answer = match (self.result, outcome) {
            (None, _) => Err(WriteError::Panicked),
            (Some(Err(e)), _) => Err(WriteError::Job(e)),
            (Some(Ok(_)), Completion::Unaudited) => Err(WriteError::Unaudited),
            (Some(Ok(_)), Completion::Failed(e)) => Err(WriteError::Store(e)),
            (Some(Ok(value)), Completion::Committed) => Ok(value),
        };
        let _ = self.reply.send(answer);
    }
}

/// A batch that is over: its jobs, whether each changed rows unaudited,
/// and why the batch failed (`None`: it committed durably).
pub struct Finished {
    jobs: Vec<(Box<dyn Pending>, bool)>,
    broken: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Finished {
    /// Answers every caller of the batch.
    fn answer(self) {
        for (job, unaudited) in self.jobs {
            let outcome = match &self.broken {
                Some(e) => Completion::Failed(StoreError::Commit(Arc::clone(e))),
                None if unaudited => Completion::Unaudited,
                None => Completion::Committed,
            };
            job.finish(outcome);
        }
    }
}

/// The writer thread's loop: until every sender is gone. Each batch, once
/// over, goes to `done` (the answering thread), or is answered here if it
/// is small or that thread is gone.
pub fn run(conn: &Connection, jobs: &Receiver<Box<dyn Job>>, done: &Sender<Finished>) {
    let mut heads = HeadCache::default();
    while let Ok(first) = jobs.recv() {
        let finished = run_batch(conn, &mut heads, first, jobs);
        if finished.jobs.len() <= ANSWER_INLINE {
            finished.answer();
            continue;
        }
        if let Err(std::sync::mpsc::SendError(finished)) = done.send(finished) {
            finished.answer();
        }
    }
}

/// The answering thread's loop: answers each finished batch's callers, in
/// batch order, until the writer is gone.
pub fn answer(done: &Receiver<Finished>) {
    while let Ok(finished) = done.recv() {
        finished.answer();
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(
    conn: &Connection,
    heads: &mut HeadCache,
    first: Box<dyn Job>,
    jobs: &Receiver<Box<dyn Job>>,
) -> Finished {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").and_then(|()| heads.check(conn)) {
        heads.clear();
        if !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "rolling back a batch that could not start failed");
        }
        first.abort(StoreError::Commit(Arc::new(e)));
        return Finished {
            jobs: Vec::new(),
            broken: None,
        };
    }
    let mut pending: Vec<(Box<dyn Pending>, bool)> = Vec::new();
    let mut next = Some(first);
    let mut broken: Option<Arc<dyn std::error::Error + Send + Sync>> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None if pending.len() < MAX_BATCH => match jobs.try_recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            None => break,
        };
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            let e: Arc<dyn std::error::Error + Send + Sync> = Arc::new(e);
            job.abort(StoreError::Commit(Arc::clone(&e)));
            broken = Some(e);
            break;
        }
        let changes_before = conn.total_changes();
        let mut tx = WriteTx::new(conn, heads);
        let result = job.run(&mut tx);
        let unaudited = result.succeeded()
            && !tx.unaudited_ok
            && (tx.append_failed || (tx.appended == 0 && conn.total_changes() != changes_before));
        if conn.is_autocommit() {
            // SQLite ended the transaction inside the job (an I/O error, or a
            // job that committed or rolled back by itself): the batch is lost.
            pending.push((result, unaudited));
            broken = Some(Arc::new(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the batch transaction ended inside a job".into()),
            )));
            break;
        }
        let keep = result.succeeded() && !unaudited;
        let step = if keep {
            exec(conn, "RELEASE job")
        } else {
            // The cached heads may hold the job's appends.
            heads.clear();
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        };
        pending.push((result, unaudited));
        if let Err(e) = step {
            broken = Some(Arc::new(e));
            break;
        }
    }
    if broken.is_none()
        && let Err(e) = exec(conn, "COMMIT")
    {
        broken = Some(Arc::new(e));
    }
    if broken.is_some() {
        heads.clear();
    }
    if broken.is_some()
        && !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "rolling back a failed batch failed");
    }
    if let Some(e) = &broken {
        tracing::warn!(error = %e, jobs = pending.len(), "write batch failed");
    }
    Finished {
        jobs: pending,
        broken,
    }
}
