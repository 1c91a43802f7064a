//! [`DbThread`]: the single writer thread that owns a [`Store`] and group-commits batches of ops.
//!
//! The thread blocks for one op, drains up to [`MAX_EXTRA_PER_BATCH`] more already-queued ops,
//! runs `BEGIN IMMEDIATE`, runs each op inside its own `SAVEPOINT` (a failed or panicking op is
//! rolled back to its savepoint without spoiling the others), `COMMIT`s, and only then calls every
//! op's reply with the commit outcome. Between the commit and the replies it updates the
//! acknowledged-work mark (`<db>.ack-hwm`, see [`crate::marks`]) when the batch changed the database.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender, TryRecvError, TrySendError};

use crate::marks::HwmWriter;
use crate::{Store, StoreError};

/// Called after the batch's `COMMIT` returned, with the commit outcome.
pub type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs inside the batch transaction and returns the reply to call after the commit.
pub type DbOp = Box<dyn FnOnce(&Store) -> Reply + Send>;

/// At most this many ops are drained after the first one into one batch.
pub const MAX_EXTRA_PER_BATCH: usize = 256;

/// What an op produced: whether to keep its writes, and its reply.
struct Executed {
    ok: bool,
    reply: Reply,
}

/// One queued unit of work.
struct Task {
    /// Runs the op on the store.
    exec: Box<dyn FnOnce(&Store) -> Executed + Send>,
    /// Called instead of the reply if `exec` panicked or could not be run.
    fail: Box<dyn FnOnce(StoreError) + Send>,
}

#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    ops: AtomicU64,
    /// Fault injection: hold every COMMIT this long (tests of "acknowledged only after commit").
    commit_delay_ns: AtomicU64,
}

/// Handle to the writer thread. Dropping it closes the queue, lets the thread finish what was
/// queued, close the database, and waits for it.
pub struct DbThread {
    tx: Option<Sender<Task>>,
    handle: Option<JoinHandle<Result<(), StoreError>>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for DbThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (batches, ops) = self.group_commit_stats();
        f.debug_struct("DbThread")
            .field("batches", &batches)
            .field("ops", &ops)
            .finish()
    }
}

impl DbThread {
    /// Opens the store at `path` on a new thread (queue of `queue_capacity` ops) and returns once
    /// the open succeeded; open errors are returned here.
    pub fn spawn(path: &Path, queue_capacity: usize) -> Result<DbThread, StoreError> {
        if queue_capacity == 0 {
            return Err(StoreError::invalid("queue_capacity", "0", "at least 1"));
        }
        let (tx, rx) = channel::bounded::<Task>(queue_capacity);
        let (open_tx, open_rx) = channel::bounded::<Result<(), StoreError>>(1);
        let stats = Arc::new(Stats::default());
        let thread_stats = Arc::clone(&stats);
        let path = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("shotline-store".into())
            .spawn(move || {
                let store = match Store::open(&path) {
                    Ok(s) => {
                        let _ = open_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = open_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let mut hwm = HwmWriter::open(&path, &store);
                serve(&store, &rx, &thread_stats, &mut hwm);
                store.conn.close().map_err(|(_, e)| StoreError::Sqlite(e))
            })
            .map_err(|source| StoreError::Io {
                what: "spawn the store thread",
                path: Default::default(),
                source,
            })?;
        match open_rx.recv() {
            Ok(Ok(())) => Ok(DbThread {
                tx: Some(tx),
                handle: Some(handle),
                stats,
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err(StoreError::Panicked(
                    "the store thread died while opening the database".into(),
                ))
            }
        }
    }

    fn enqueue(&self, task: Task) -> Result<(), StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.try_send(task).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Closed,
        })
    }

    /// Queues `op` without blocking: a full queue is [`StoreError::Busy`], a gone thread
    /// [`StoreError::Closed`]. The op's writes are kept unless it panics; a panicking op is rolled
    /// back and its reply is never called (the panic is logged). If the batch transaction cannot be
    /// started, the op is dropped without running.
    pub fn submit(&self, op: DbOp) -> Result<(), StoreError> {
        self.enqueue(Task {
            exec: Box::new(move |store| Executed {
                ok: true,
                reply: op(store),
            }),
            fail: Box::new(|e| tracing::error!(error = %e, "store op did not complete")),
        })
    }

    /// Queues `f` for the next batch without waiting: the outcome (`f`'s value once the batch committed, or
    /// the error) is sent on `done`. A full queue or a gone thread is sent on `done` at once. This is what
    /// an actor that owns the thread uses to serve callers without awaiting the commit itself.
    pub fn enqueue_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        done: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
    ) {
        let slot = Arc::new(Mutex::new(Some(done)));
        let fail_slot = Arc::clone(&slot);
        let enqueue_slot = Arc::clone(&slot);
        let send = |slot: &Mutex<Option<tokio::sync::oneshot::Sender<Result<T, StoreError>>>>,
                    v: Result<T, StoreError>| {
            if let Some(tx) = slot.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(v);
            }
        };
        let queued = self.enqueue(Task {
            exec: Box::new(move |store| {
                let result = f(store);
                let ok = result.is_ok();
                Executed {
                    ok,
                    reply: Box::new(move |commit| {
                        let v = match (result, commit) {
                            (Err(e), _) => Err(e),
                            (Ok(_), Err(e)) => Err(e),
                            (Ok(v), Ok(())) => Ok(v),
                        };
                        send(&slot, v);
                    }),
                }
            }),
            fail: Box::new(move |e| send(&fail_slot, Err(e))),
        });
        if let Err(e) = queued {
            send(&enqueue_slot, Err(e));
        }
    }

    /// Runs `f` in the next batch and waits for the batch's commit. Returns `Ok` only if `f`
    /// succeeded and the commit succeeded; if `f` fails (or panics) its writes are rolled back and
    /// its error is returned. Fails fast with [`StoreError::Busy`] if the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        self.enqueue_with(f, tx);
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Fault injection: every later COMMIT is held this long before it runs (zero: none).
    pub fn set_commit_delay(&self, delay: std::time::Duration) {
        self.stats.commit_delay_ns.store(
            delay.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Ops queued and not yet taken by the writer thread.
    pub fn queue_len(&self) -> usize {
        self.tx.as_ref().map(|tx| tx.len()).unwrap_or(0)
    }

    /// `(batches committed, ops run)` since spawn; `ops / batches` is the mean batch size.
    pub fn group_commit_stats(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.ops.load(Ordering::Relaxed),
        )
    }

    /// Closes the queue, lets the thread run and commit what was queued, closes the connection
    /// and joins the thread.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        drop(self.tx.take());
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| StoreError::Panicked("the store thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for DbThread {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "store thread did not shut down cleanly");
        }
    }
}

fn serve(store: &Store, rx: &Receiver<Task>, stats: &Stats, hwm: &mut HwmWriter) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() <= MAX_EXTRA_PER_BATCH {
            match rx.try_recv() {
                Ok(t) => batch.push(t),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        run_batch(store, batch, stats, hwm);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn run_batch(store: &Store, batch: Vec<Task>, stats: &Stats, hwm: &mut HwmWriter) {
    let conn = &store.conn;
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = StoreError::batch("BEGIN IMMEDIATE", &e);
        tracing::error!("{err}");
        for task in batch {
            (task.fail)(err.clone_batch());
        }
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut spoiled: Option<String> = None;
    let n = batch.len() as u64;
    for task in batch {
        if let Err(e) = conn.execute_batch("SAVEPOINT op") {
            (task.fail)(StoreError::Transaction(format!("SAVEPOINT failed: {e}")));
            continue;
        }
        let exec = task.exec;
        match catch_unwind(AssertUnwindSafe(|| exec(store))) {
            Ok(Executed { ok: true, reply }) => {
                if let Err(e) = conn.execute_batch("RELEASE op") {
                    spoiled.get_or_insert(format!("RELEASE failed: {e}"));
                }
                replies.push(reply);
            }
            Ok(Executed { ok: false, reply }) => {
                if let Err(e) = conn.execute_batch("ROLLBACK TO op; RELEASE op") {
                    spoiled.get_or_insert(format!("ROLLBACK TO failed: {e}"));
                }
                replies.push(reply);
            }
            Err(p) => {
                let msg = panic_message(p.as_ref());
                if let Err(e) = conn.execute_batch("ROLLBACK TO op; RELEASE op") {
                    spoiled.get_or_insert(format!("ROLLBACK TO after a panic failed: {e}"));
                }
                tracing::error!(panic = %msg, "store op panicked; rolled back");
                (task.fail)(StoreError::Panicked(msg));
            }
        }
    }
    let delay = stats.commit_delay_ns.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(std::time::Duration::from_nanos(delay));
    }
    let outcome = match spoiled {
        Some(msg) => Err(StoreError::Transaction(msg)),
        None => conn
            .execute_batch("COMMIT")
            .map_err(|e| StoreError::batch("COMMIT", &e)),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "rolling back a failed batch failed");
        }
    }
    if outcome.is_ok() {
        // Before any reply: what a caller is told is committed is always covered by the mark.
        hwm.committed(store);
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(n, Ordering::Relaxed);
    for reply in replies {
        reply(match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(e.clone_batch()),
        });
    }
}
