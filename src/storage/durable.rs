//! Making sled writes truly durable, one fsync per batch of writers.
//!
//! sled 0.34 flushes its buffers in the background every 500 ms, and even an explicit
//! `flush()` only calls `sync_file_range` on Linux: the data reaches the device queue but
//! neither the disk cache nor the file's metadata is flushed. So after sled's flush we
//! `fsync` the database file ourselves. sled writes any log message larger than a quarter
//! segment (a big value, but also a consolidated leaf of many small ones) to a separate
//! blob file that it never syncs; every flush therefore also syncs the blob files created
//! since the previous one (their names are increasing log sequence numbers) and the blob
//! directory.
//!
//! A single flusher thread serves every writer: it takes all requests that queued while
//! the previous flush ran and answers them with one flush. Under load this turns N
//! concurrent appends into one fsync (group commit); alone, a request pays one fsync.
//!
//! The flusher also keeps the high-water mark ([`super::mark`]): a request may say what
//! its writes moved (the log's end, the vote), and once the flush made them durable the
//! mark file records them, before any writer of the batch is answered (one more
//! `fdatasync` per batch). Recording an append's mark after answering was tried and
//! left a window: a master killed between the answer and the mark, whose last batch was
//! then damaged, opened with acknowledged entries silently gone (3 runs in 25 of the
//! storage test that cuts a killed writer's log).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::mpsc;

use super::mark::{Mark, MarkFile};
use crate::type_config::{LogId, Vote};

/// Snapshot data is stored in chunks of this size. Above a quarter of sled's 512 KiB
/// segment, so sled writes each chunk to a blob file of its own rather than through its
/// log; and above the 256 KiB from which a master has glibc map every allocation on its
/// own, so a chunk's memory goes back to the OS once freed (see `cli::serve`).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// A completion to run once everything written before the request is on disk.
type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Request {
    done: Done,
    /// What the writes before the request moved, for the mark.
    moved: Option<Moved>,
}

/// What a store's writes moved, as the high-water mark records it.
#[derive(Debug, Clone, Copy)]
pub enum Moved {
    /// Entries were appended up to this log id: the log ends there.
    Appended(LogId),
    /// The log is about to be truncated after this log id (recorded before the answer).
    TruncatingAfter(Option<LogId>),
    /// This vote was saved (recorded before the answer).
    Voted(Vote),
}

impl Moved {
    fn apply(self, mark: &mut Mark) {
        match self {
            Moved::Appended(last) => mark.last_log_id = Some(last),
            Moved::TruncatingAfter(last) => mark.last_log_id = mark.last_log_id.min(last),
            Moved::Voted(vote) => mark.vote = Some(vote),
        }
    }
}

/// The handle writers use to wait for durability. Cloneable; the thread stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Request>,
}

/// The flusher thread, seen from its owner. The thread ends, after one last flush, once
/// every [`Flusher`] handle is gone (that is, once Raft has dropped the stores).
pub struct FlusherThread {
    finished: tokio::sync::oneshot::Receiver<io::Result<()>>,
}

impl FlusherThread {
    /// Waits (at most `deadline`) for the thread's last flush. `None` means some store
    /// handle is still alive and the thread still running.
    pub async fn finished(self, deadline: std::time::Duration) -> Option<io::Result<()>> {
        match tokio::time::timeout(deadline, self.finished).await {
            Ok(Ok(result)) => Some(result),
            Ok(Err(_)) => Some(Err(io::Error::other("the flusher thread panicked"))),
            Err(_) => None,
        }
    }
}

impl Flusher {
    /// Starts the flusher thread for `db`, whose files live in `dir`, keeping
    /// `mark_file`; `reached` is how far the store's log and vote reach now.
    pub fn start(
        db: sled::Db,
        dir: &Path,
        mut mark_file: MarkFile,
        reached: Mark,
    ) -> io::Result<(Flusher, FlusherThread)> {
        let db_file = File::open(dir.join("db"))?;
        let blob_dir = dir.join("blobs");
        let (tx, rx) = mpsc::channel::<Request>();
        let (finished_tx, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("chorus-flusher".into())
            .spawn(move || {
                let mut blobs = BlobSync::default();
                let mut mark = reached;
                let mut failed = None;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let mut result = match &failed {
                        Some(failure) => Err(after(failure)),
                        None => flush(&db, &db_file, &blob_dir, &mut blobs),
                    };
                    let moved: Vec<Moved> = batch.iter().filter_map(|r| r.moved).collect();
                    if result.is_ok() && !moved.is_empty() {
                        moved.into_iter().for_each(|m| m.apply(&mut mark));
                        result = mark_file.write(mark);
                    }
                    if let (Err(e), None) = (&result, &failed) {
                        failed = Some(copy(e));
                    }
                    for request in batch {
                        (request.done)(result.as_ref().map(|_| ()).map_err(copy));
                    }
                }
                // Every writer is gone: make whatever they wrote without waiting (the
                // committed mark, say) durable before reporting the store closed, and
                // release sled first, so that the database can be opened again at once
                // (sled locks its files until the last handle is dropped).
                let result = match &failed {
                    Some(failure) => Err(after(failure)),
                    None => flush(&db, &db_file, &blob_dir, &mut blobs)
                        .and_then(|()| mark_file.write(mark)),
                };
                drop(db);
                let _ = finished_tx.send(result);
            })?;
        Ok((Flusher { tx }, FlusherThread { finished }))
    }

    /// Runs `done` once everything written so far is durable (and, if the writes
    /// `moved` something, the mark recorded it as [`Moved`] says).
    pub fn submit(&self, moved: Option<Moved>, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        let request = Request {
            done: Box::new(done),
            moved,
        };
        if let Err(mpsc::SendError(request)) = self.tx.send(request) {
            (request.done)(Err(io::Error::other("the flusher has stopped")));
        }
    }

    /// Waits until everything written so far is durable.
    pub async fn flush(&self) -> io::Result<()> {
        self.flush_moved(None).await
    }

    /// Waits until everything written so far is durable, and the mark records `moved`.
    pub async fn flush_moved(&self, moved: Option<Moved>) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(moved, move |result| {
            let _ = tx.send(result);
        });
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the flusher has stopped")))
    }
}

fn copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// The error of every flush after a failed one. Once an fsync has failed, Linux may
/// have dropped the dirty pages it could not write and a later fsync succeeds without
/// them (PostgreSQL's "fsyncgate"), so no later flush can vouch for anything: the store
/// fails from then on, Raft stops, and the master exits to be restarted from what is on
/// disk.
fn after(failure: &io::Error) -> io::Error {
    io::Error::new(
        failure.kind(),
        format!("an earlier flush failed ({failure}); nothing written since is durable"),
    )
}

fn flush(db: &sled::Db, db_file: &File, blob_dir: &Path, blobs: &mut BlobSync) -> io::Result<()> {
    if crate::failpoint::hit("storage::fsync").is_some() {
        return Err(crate::failpoint::io_error("storage::fsync"));
    }
    db.flush().map_err(io::Error::other)?;
    db_file.sync_all()?;
    blobs.sync_new(blob_dir)
}

/// Remembers the newest blob file already synced.
#[derive(Default)]
struct BlobSync {
    synced_up_to: Option<u64>,
}

impl BlobSync {
    /// fsyncs the blob files newer than the last sync, then the directory. Costs one
    /// directory listing when there are none.
    fn sync_new(&mut self, dir: &Path) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut newest = self.synced_up_to;
        for entry in entries {
            let path = entry?.path();
            let Some(lsn) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if self.synced_up_to.is_some_and(|synced| lsn <= synced) {
                continue;
            }
            File::open(&path)?.sync_all()?;
            newest = newest.max(Some(lsn));
        }
        if newest != self.synced_up_to {
            File::open(dir)?.sync_all()?;
            self.synced_up_to = newest;
        }
        Ok(())
    }
}

/// fsyncs every file in `dir` and then the directory itself, so new names are durable.
pub fn sync_dir_files(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}
