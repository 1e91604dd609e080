//! The single writer thread and its group commit.
//!
//! Jobs queue on a channel. The writer takes every job waiting (up to
//! [`MAX_BATCH`]), runs them one after another inside one `BEGIN IMMEDIATE`
//! transaction, each under its own `SAVEPOINT`, commits once (one fsync at
//! `synchronous=FULL`), and only then answers each job's caller. Jobs that
//! arrive while a batch commits form the next batch.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use rusqlite::Connection;

use super::{StoreError, WriteError, WriteTx};

/// The most jobs in one transaction.
pub const MAX_BATCH: usize = 4096;

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

/// The writer thread's loop: until every sender is gone.
pub fn run(conn: &Connection, jobs: &Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        run_batch(conn, first, jobs);
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(conn: &Connection, first: Box<dyn Job>, jobs: &Receiver<Box<dyn Job>>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        first.abort(StoreError::Commit(Arc::new(e)));
        return;
    }
    let mut pending: Vec<(Box<dyn Pending>, bool)> = Vec::new();
    let mut next = Some(first);
    let mut broken: Option<Arc<rusqlite::Error>> = None;
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
            let e = Arc::new(e);
            job.abort(StoreError::Commit(Arc::clone(&e)));
            broken = Some(e);
            break;
        }
        let changes_before = conn.total_changes();
        let mut tx = WriteTx::new(conn);
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
    if broken.is_some()
        && !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "rolling back a failed batch failed");
    }
    if let Some(e) = &broken {
        tracing::warn!(error = %e, jobs = pending.len(), "write batch failed");
    }
    for (job, unaudited) in pending {
        let outcome = match &broken {
            Some(e) => Completion::Failed(StoreError::Commit(Arc::clone(e))),
            None if unaudited => Completion::Unaudited,
            None => Completion::Committed,
        };
        job.finish(outcome);
    }
}
