//! The SQLite store: one file holds the audit log and the account state, and
//! every change to either happens in one transaction with its audit record.
//!
//! ```no_run
//! use chaperone_store::{RecordDraft, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("chaperone.db")?; // creates chaperone.db.key / .pub
//! let appended = store.write(|tx| {
//!     let appended = tx.append(&RecordDraft {
//!         account: "acme".into(),
//!         time_ms: 1_700_000_000_000,
//!         kind: "sync".into(),
//!         actor: None,
//!         request: serde_json::json!({"step": "account"}),
//!         decision: None,
//!         effects: serde_json::json!([]),
//!         policy: None,
//!         input: None,
//!     })?;
//!     // ... apply the effects with tx.conn(), in the same transaction ...
//!     Ok::<_, chaperone_store::StoreError>(appended)
//! })?;
//! assert_eq!(appended.seq.get(), 1);
//! store.checkpoint(1_700_000_000_001)?;
//! assert!(store.verify(&Default::default())?.is_ok());
//! # Ok(()) }
//! ```
//!
//! The store runs in WAL mode with `synchronous=FULL`. There is one writer: a
//! thread that owns the only writing connection and commits concurrent jobs
//! in groups ([`Store::write`]); callers of a large group are answered, once
//! it is durable, by a second thread, while the writer starts the next one.
//! Callers can encode their records beforehand ([`Prepared`],
//! [`WriteTx::append_prepared`]), so that the writer only hashes and inserts.
//! Reads run on their own connections and do not block it ([`Store::read`]).
//!
//! Architecture invariant: a write job that changes any row but appends no
//! audit record (or whose append failed) is rolled back and its caller gets
//! [`WriteError::Unaudited`]. Nothing takes effect without its record.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use chaperone_log::keys::{self, KeyError, Signer, Verifier};
use chaperone_log::verify::Report;
pub use chaperone_log::{
    ActorRef, Appended, AuditError, ChainHash, ChainHead, Checkpoint, DecisionRecord, PolicyRef,
    Prepared, Record, RecordDraft, Seq, StoredRecord, Verdict,
};

use export::{ExportError, ExportSummary};
use verify::{VerifyError, VerifyOptions};

mod append;
pub mod checkpoints;
pub mod export;
pub mod migrations;
mod ops;
pub mod outbox;
pub mod read;
pub mod registry;
pub mod state;
pub mod storage;
pub mod verify;
mod writer;

pub use storage::{
    AccountRead, Committed, DecisionCommit, KeptModule, NamedObject, StateVersion, Storage,
    SyncError, WriteFailure, recorded_effect,
};

/// The schema version of a store with the audit log's tables.
pub const AUDIT_SCHEMA_VERSION: i64 = 1;

/// The newest schema version (the last of [`migrations::MIGRATIONS`]).
pub const SCHEMA_VERSION: i64 = 7;

/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer's page cache: 16 MiB (a negative `cache_size` is in KiB).
const WRITER_CACHE_KIB: i64 = -16_384;

/// The WAL size (pages) at which the writer checkpoints by itself, if the
/// background checkpointer falls behind.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// How often the background checkpointer copies the WAL into the database.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Read connections kept for reuse: enough for every concurrent caller, so
/// none pays for opening a connection (measured: 64 client threads went
/// from 1.6k to 4.9k decisions/s).
const READER_POOL: usize = 64;

/// An error of the database engine underneath, kept as the cause of a
/// [`StoreError`] (the store's signatures name no engine's types).
pub type DatabaseError = Box<dyn std::error::Error + Send + Sync>;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or set up.
    #[error("cannot open store `{}`", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// The database could not be put in WAL mode.
    #[error("store `{path}` cannot use write-ahead logging (journal mode `{mode}`)")]
    NotWal {
        /// The file.
        path: PathBuf,
        /// The journal mode it has.
        mode: String,
    },
    /// The store was written by a newer version.
    #[error("store `{path}` has schema version {found}; this version knows up to {known}")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this version knows.
        known: i64,
    },
    /// A schema migration failed.
    #[error("schema migration {version} ({name}) failed")]
    Migration {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// Why.
        #[source]
        source: DatabaseError,
    },
    /// The signing key could not be read or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Checkpoints need the private key, and the store has none.
    #[error("store `{0}` has no signing key")]
    NoSigningKey(PathBuf),
    /// The writer thread is gone.
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// A write batch could not be committed; none of its jobs took effect.
    #[error("could not commit the write batch: {}", cause(.0.as_ref()))]
    Commit(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The file is an SQLite database, but not a store: it has tables of
    /// its own and no store schema.
    #[error(
        "`{path}` is an SQLite database but not a Chaperone store (it has tables {tables}); refusing to add the store's tables to it"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Some of its tables.
        tables: String,
    },
    /// A write job was rolled back for a reason of its own (it panicked,
    /// or changed rows without an audit record).
    #[error("the write was rolled back: {0}")]
    Aborted(String),
    /// The database failed.
    #[error("the store failed: {}", cause(.0.as_ref()))]
    Database(#[source] DatabaseError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Verification could not run.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// Why a write job did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    /// The job returned this error; its changes were rolled back.
    #[error("{0}")]
    Job(E),
    /// The job changed rows without a successful audit record (it appended
    /// none, or an append failed); its changes were rolled back.
    #[error("the write changed the store without an audit record and was rolled back")]
    Unaudited,
    /// The job panicked; its changes were rolled back.
    #[error("the write job panicked and was rolled back")]
    Panicked,
    /// The store failed; nothing of the job took effect.
    #[error(transparent)]
    Store(StoreError),
}

/// A write whose job fails with a [`StoreError`], as one [`StoreError`].
pub(crate) fn flatten_write(e: WriteError<StoreError>) -> StoreError {
    match e {
        WriteError::Job(e) | WriteError::Store(e) => e,
        other => StoreError::Aborted(other.to_string()),
    }
}

/// What went wrong in words an operator acts on: a lock held by another
/// process, a full disk, a read-only file, else the engine's own message.
pub fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    use rusqlite::ErrorCode;
    let code = error
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code);
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "the store is locked by another process (waited {} s for it); is another `chaperone` using it?",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::DiskFull) => "the disk is full".into(),
        Some(ErrorCode::ReadOnly) => "the store's file is read-only".into(),
        Some(ErrorCode::CannotOpen) => "the store's file cannot be opened".into(),
        Some(ErrorCode::NotADatabase) => "the file is not an SQLite database".into(),
        _ => error.to_string(),
    }
}

/// The store. Cheap to clone; every clone shares one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Option<Sender<Box<dyn writer::Job>>>,
    writer: Option<JoinHandle<()>>,
    writer_id: Option<ThreadId>,
    answerer: Option<JoinHandle<()>>,
    answerer_id: Option<ThreadId>,
    wal: Option<(Sender<()>, JoinHandle<()>)>,
    readers: Mutex<Vec<Connection>>,
    signer: Option<Arc<Signer>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after its current batch.
        self.jobs.take();
        // On the writer or the answering thread (the last clone dropped by
        // a job, or with a job's answer), joining would wait for itself.
        let here = Some(std::thread::current().id());
        let on_writer = here == self.writer_id || here == self.answerer_id;
        if let Some(handle) = self.writer.take()
            && !on_writer
        {
            let _ = handle.join();
        }
        // The writer is gone, and with it the answering thread's channel.
        if let Some(handle) = self.answerer.take()
            && !on_writer
        {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.wal.take() {
            drop(stop);
            if !on_writer {
                let _ = handle.join();
            }
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("signer", &self.inner.signer)
            .finish_non_exhaustive()
    }
}

/// One write job's view of the batch transaction.
pub struct WriteTx<'c> {
    conn: &'c Connection,
    heads: &'c mut append::HeadCache,
    appended: u64,
    append_failed: bool,
    unaudited_ok: bool,
}

impl<'c> WriteTx<'c> {
    fn new(conn: &'c Connection, heads: &'c mut append::HeadCache) -> WriteTx<'c> {
        WriteTx {
            conn,
            heads,
            appended: 0,
            append_failed: false,
            unaudited_ok: false,
        }
    }

    /// The connection, inside the transaction: read and change state here.
    /// Do not begin, commit or roll back transactions on it.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// Appends a record to its account's chain, in this transaction. If it
    /// fails, the whole job is rolled back, whatever the job returns.
    pub fn append(&mut self, draft: &RecordDraft) -> Result<Appended, StoreError> {
        let result = append::append(self.conn, self.heads, draft);
        self.note_append(result)
    }

    /// Appends a record prepared beforehand (on the caller's thread, out of
    /// the writer's way: see [`Prepared`]), like [`WriteTx::append`].
    pub fn append_prepared(&mut self, prepared: &Prepared) -> Result<Appended, StoreError> {
        let result = append::append_prepared(self.conn, self.heads, prepared);
        self.note_append(result)
    }

    fn note_append(
        &mut self,
        result: Result<Appended, StoreError>,
    ) -> Result<Appended, StoreError> {
        match result {
            Ok(appended) => {
                self.appended += 1;
                Ok(appended)
            }
            Err(e) => {
                self.append_failed = true;
                Err(e)
            }
        }
    }

    /// The head of `account`'s chain, as of this transaction (from the
    /// writer's head cache: the same read an append makes).
    pub fn head(&mut self, account: &str) -> Result<Option<ChainHead>, StoreError> {
        self.heads.head(self.conn, account)
    }

    /// Lets this job change rows without appending a record. Only for host
    /// bookkeeping that is no account event (checkpoints, caches); never for
    /// account state.
    pub fn allow_unaudited_changes(&mut self) {
        self.unaudited_ok = true;
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens a connection with `flags` (plus `NO_MUTEX`: each connection has
/// one thread) and the settings every connection of the store shares.
fn open_configured(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let open = |source: rusqlite::Error| StoreError::Open {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let conn =
        Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(open)?;
    configure(&conn).map_err(open)?;
    Ok(conn)
}

/// Refuses a database that holds tables but no store schema (version 0):
/// someone else's SQLite file, which the migrations would otherwise add the
/// store's tables to.
fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let open = |source: rusqlite::Error| StoreError::Open {
        path: path.to_owned(),
        source: Box::new(source),
    };
    if migrations::version(conn).map_err(open)? != 0 {
        return Ok(());
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 5")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(open)?;
    if tables.is_empty() {
        return Ok(());
    }
    Err(StoreError::Foreign {
        path: path.to_owned(),
        tables: tables
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_configured(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.pragma_update(None, "query_only", "ON")
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    Ok(conn)
}

/// Starts the thread that copies the WAL back into the database with
/// passive checkpoints (they never block the writer or readers) until its
/// channel closes.
fn spawn_wal_checkpointer(path: &Path) -> Result<(Sender<()>, JoinHandle<()>), StoreError> {
    let conn = open_configured(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("store-wal".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(WAL_CHECKPOINT_EVERY)
            {
                let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
    Ok((stop, handle))
}

impl Store {
    /// Opens the store at `path`, creating it if missing, and migrates it to
    /// the newest schema. A new store gets a new Ed25519 key pair: the private
    /// key in `PATH.key` (mode 0600), the public key in `PATH.pub`. An
    /// existing store without `PATH.key` opens without a signing key (it can
    /// do everything but [`Store::checkpoint`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let signer = if path.exists() {
            keys::load_signer(&path)?
        } else {
            Some(keys::load_or_create(&path)?)
        };
        let open = |source: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        };
        let mut conn = open_configured(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(open)?;
        refuse_foreign(&conn, &path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(open)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal { path, mode });
        }
        migrations::run(&mut conn, &path)?;

        // The writer only appends to the WAL; copying it back into the
        // database (and that fsync) happens on a thread of its own, so
        // commits do not wait for it. The writer's own automatic checkpoint
        // stays as a backstop at a much larger WAL.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(open)?;
        let wal = spawn_wal_checkpointer(&path)?;
        let spawn_failed = |e: std::io::Error| StoreError::Open {
            path: path.clone(),
            source: Box::new(e),
        };
        let (done, finished) = mpsc::channel::<writer::Finished>();
        let answerer = std::thread::Builder::new()
            .name("store-answer".into())
            .spawn(move || writer::answer(&finished))
            .map_err(spawn_failed)?;
        let answerer_id = answerer.thread().id();
        let (sender, receiver) = mpsc::channel::<Box<dyn writer::Job>>();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(&conn, &receiver, &done))
            .map_err(spawn_failed)?;
        let writer_id = handle.thread().id();
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                jobs: Some(sender),
                writer: Some(handle),
                writer_id: Some(writer_id),
                answerer: Some(answerer),
                answerer_id: Some(answerer_id),
                wal: Some(wal),
                readers: Mutex::new(Vec::new()),
                signer: signer.map(Arc::new),
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The log's signing key, if the store was opened with it.
    pub fn signer(&self) -> Option<Arc<Signer>> {
        self.inner.signer.clone()
    }

    /// The log's public key: the signing key's, or else `PATH.pub`'s.
    pub fn verifier(&self) -> Result<Verifier, StoreError> {
        match &self.inner.signer {
            Some(signer) => Ok(signer.verifier()),
            None => Ok(keys::load_verifier(&keys::public_key_path(
                &self.inner.path,
            ))?),
        }
    }

    /// Runs `job` on the writer thread, inside the current group-commit batch
    /// transaction, under its own savepoint, and returns once the batch is
    /// durably committed.
    ///
    /// A job that returns `Err` has its own changes rolled back and its
    /// caller gets [`WriteError::Job`]; the other jobs of the batch still
    /// commit. A job that changes rows without appending an audit record
    /// (see [`WriteTx::append`]) is rolled back with [`WriteError::Unaudited`].
    /// If the batch cannot commit, every job in it gets
    /// [`WriteError::Store`] and nothing of it took effect.
    pub fn write<T, E, F>(&self, job: F) -> Result<T, WriteError<E>>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Box<dyn writer::Job> = Box::new(writer::WriteJob { job, reply });
        let sender = self
            .inner
            .jobs
            .as_ref()
            .ok_or(WriteError::Store(StoreError::WriterStopped))?;
        sender
            .send(job)
            .map_err(|_| WriteError::Store(StoreError::WriterStopped))?;
        // A dropped reply means the job panicked past its guard or the
        // writer died.
        answer.recv().unwrap_or(Err(WriteError::Panicked))
    }

    /// Runs `f` on a pooled read connection.
    pub(crate) fn with_reader<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        let mut pool = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        result
    }

    /// Runs `f` on a read connection (WAL: it does not block the writer, and
    /// sees the last committed state).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_reader(|conn| f(conn).map_err(StoreError::from))
    }

    /// Signs a checkpoint of every chain head at `now_ms`, stores it with
    /// the heads its tree commits to (its note names none), and returns it.
    pub fn checkpoint(&self, now_ms: i64) -> Result<Checkpoint, StoreError> {
        let signer = self
            .inner
            .signer
            .clone()
            .ok_or_else(|| StoreError::NoSigningKey(self.inner.path.clone()))?;
        self.write(move |tx| {
            tx.allow_unaudited_changes();
            checkpoints::create(tx.conn(), &signer, now_ms)
        })
        .map_err(|e| match e {
            WriteError::Job(e) => e,
            WriteError::Store(e) => e,
            other @ (WriteError::Unaudited | WriteError::Panicked) => {
                StoreError::Aborted(other.to_string())
            }
        })
    }

    /// The newest stored checkpoint, checked against the store's public key.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(stored) = self.read(checkpoints::latest)? else {
            return Ok(None);
        };
        let verifier = self.verifier()?;
        Checkpoint::open(&stored.note, &verifier)
            .map(Some)
            .map_err(|e| {
                StoreError::Audit(AuditError::Corrupt {
                    account: String::new(),
                    detail: format!("checkpoint #{}: {e}", stored.id),
                })
            })
    }

    /// The head of `account`'s chain.
    pub fn head(&self, account: &str) -> Result<Option<ChainHead>, StoreError> {
        self.with_reader(|conn| read::head(conn, account))
    }

    /// Every account with records, sorted.
    pub fn accounts(&self) -> Result<Vec<String>, StoreError> {
        self.read(read::accounts)
    }

    /// Every record of `account`, decoded, in order.
    pub fn records(&self, account: &str) -> Result<Vec<StoredRecord>, StoreError> {
        self.with_reader(|conn| read::records(conn, account))
    }

    /// Calls `f` with each record of `account`, decoded, in order, from one
    /// consistent read.
    pub fn for_each_record(
        &self,
        account: &str,
        f: impl FnMut(StoredRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with_reader(|conn| read::for_each_record(conn, account, f))
    }

    /// The number of records of each kind, for one account or (`None`) the
    /// whole store.
    pub fn count_by_kind(
        &self,
        account: Option<&str>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(|conn| read::count_by_kind(conn, account))
    }

    /// Verifies the log (see [`verify::verify_store`]). Without a key
    /// in `options`, checkpoints are checked with the store's own public key.
    pub fn verify(&self, options: &VerifyOptions) -> Result<Report, StoreError> {
        let mut options = options.clone();
        if options.verifier.is_none() {
            options.verifier = self.verifier().ok();
        }
        Ok(verify::verify_store(&self.inner.path, &options)?)
    }

    /// Writes `account`'s chain as JSON Lines (see [`export::export`]).
    pub fn export(&self, account: &str, out: &mut dyn Write) -> Result<ExportSummary, StoreError> {
        self.with_reader(|conn| Ok(export::export(conn, account, out, &|_| {})?))
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    fn draft(account: &str) -> RecordDraft {
        RecordDraft {
            account: account.into(),
            time_ms: 1,
            kind: "test".into(),
            actor: None,
            request: serde_json::json!({}),
            decision: None,
            effects: serde_json::json!([]),
            policy: None,
            input: None,
        }
    }

    #[test]
    fn another_programs_sqlite_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("app.sqlite");
        {
            let conn = Connection::open(&path).unwrap_or_else(|e| unreachable!("{e}"));
            conn.execute_batch(
                "CREATE TABLE users (id INTEGER); CREATE TABLE orders (id INTEGER);",
            )
            .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let error = Store::open(&path).map(|_| ()).unwrap_err_or_unreachable();
        let message = error.to_string();
        assert!(
            matches!(error, StoreError::Foreign { .. }) && message.contains("`orders`, `users`"),
            "{message}"
        );
        let conn = Connection::open(&path).unwrap_or_else(|e| unreachable!("{e}"));
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(tables, 2, "the store added tables to a foreign file");
        assert!(!keys::private_key_path(&path).exists());
        // An empty file (say made by `touch`) becomes a store.
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(Store::open(&empty).is_ok());
    }

    #[test]
    fn a_write_blocked_by_another_process_lock_names_the_lock() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("store.db");
        let store = Store::open(&path).unwrap_or_else(|e| unreachable!("{e}"));
        let other = Connection::open(&path).unwrap_or_else(|e| unreachable!("{e}"));
        other
            .execute_batch("BEGIN EXCLUSIVE")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let written = store.write(|tx| tx.append(&draft("acme")).map(|_| ()));
        let message = match written {
            Err(WriteError::Store(e)) => e.to_string(),
            other => unreachable!("the write went through a held lock: {other:?}"),
        };
        assert!(message.contains("locked by another process"), "{message}");
        other
            .execute_batch("ROLLBACK")
            .unwrap_or_else(|e| unreachable!("{e}"));
        // Once the lock is gone, writes go through again.
        assert!(
            store
                .write(|tx| tx.append(&draft("acme")).map(|_| ()))
                .is_ok()
        );
    }

    /// A full disk, as SQLite sees one (its page limit reached): the write
    /// is refused naming the cause, nothing of it stays, and once there is
    /// room again writes go through.
    #[test]
    fn a_write_on_a_full_disk_names_the_disk_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store =
            Store::open(dir.path().join("store.db")).unwrap_or_else(|e| unreachable!("{e}"));
        let before = store.head("acme").unwrap_or_else(|e| unreachable!("{e}"));
        let written = store.write(|tx| {
            tx.conn
                .execute_batch("PRAGMA max_page_count = 1")
                .map_err(StoreError::from)?;
            let mut big = draft("acme");
            big.request = serde_json::json!({"note": "x".repeat(64 * 1024)});
            tx.append(&big).map(|_| ())
        });
        let message = match written {
            Err(WriteError::Store(e) | WriteError::Job(e)) => e.to_string(),
            other => unreachable!("the write went through a full disk: {other:?}"),
        };
        assert!(message.contains("the disk is full"), "{message}");
        assert_eq!(
            store.head("acme").unwrap_or_else(|e| unreachable!("{e}")),
            before
        );
        let room = store.write(|tx| {
            tx.conn
                .execute_batch("PRAGMA max_page_count = 1073741823")
                .map_err(StoreError::from)?;
            tx.append(&draft("acme")).map(|_| ())
        });
        assert!(room.is_ok(), "{room:?}");
    }

    trait UnwrapErr<E> {
        fn unwrap_err_or_unreachable(self) -> E;
    }

    impl<T, E> UnwrapErr<E> for Result<T, E> {
        fn unwrap_err_or_unreachable(self) -> E {
            match self {
                Ok(_) => unreachable!("expected an error"),
                Err(e) => e,
            }
        }
    }
}
