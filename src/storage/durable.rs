//! Making sled writes truly durable, one fsync per batch of writers.
//!
//! sled 0.34 flushes its buffers in the background every 500 ms, and even an explicit
//! `flush()` only calls `sync_file_range` on Linux: the data reaches the device queue but
//! neither the disk cache nor the file's metadata is flushed. So after sled's flush we
//! `fsync` the database file ourselves. Values too large to sit inline in a segment go to
//! separate blob files that sled never syncs; when such a value was written, every blob
//! file and the blob directory are synced as well.
//!
//! A single flusher thread serves every writer: it takes all requests that queued while
//! the previous flush ran and answers them with one flush. Under load this turns N
//! concurrent appends into one fsync (group commit); alone, a request pays one fsync.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Values above this size may be written by sled as blob files (sled puts anything larger
/// than a quarter segment outside the segment; segments are 512 KiB by default).
pub const INLINE_VALUE_LIMIT: usize = 64 * 1024;

/// A completion to run once everything written before the request is on disk.
type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

struct Request {
    sync_blobs: bool,
    done: Done,
}

/// The handle writers use to wait for durability. Cloneable; the thread stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Request>,
}

/// Owns the flusher thread; dropping it waits for the queued flushes to finish.
pub struct FlusherThread {
    handle: Option<JoinHandle<()>>,
}

impl Drop for FlusherThread {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // The thread ends once every `Flusher` is gone; if one is still held elsewhere,
            // do not block the dropping thread on it.
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

impl Flusher {
    /// Starts the flusher thread for `db`, whose files live in `dir`.
    pub fn start(db: sled::Db, dir: &Path) -> io::Result<(Flusher, FlusherThread)> {
        let db_file = File::open(dir.join("db"))?;
        let blob_dir = dir.join("blobs");
        let (tx, rx) = mpsc::channel::<Request>();
        let handle = std::thread::Builder::new()
            .name("chorus-flusher".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let sync_blobs = batch.iter().any(|r| r.sync_blobs);
                    let result = flush(&db, &db_file, sync_blobs.then_some(&blob_dir));
                    for request in batch {
                        let result = match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        (request.done)(result);
                    }
                }
            })?;
        Ok((
            Flusher { tx },
            FlusherThread {
                handle: Some(handle),
            },
        ))
    }

    /// Runs `done` once everything written so far is durable.
    pub fn submit(&self, sync_blobs: bool, done: impl FnOnce(io::Result<()>) + Send + 'static) {
        let request = Request {
            sync_blobs,
            done: Box::new(done),
        };
        if let Err(mpsc::SendError(request)) = self.tx.send(request) {
            (request.done)(Err(io::Error::other("the flusher has stopped")));
        }
    }

    /// Waits until everything written so far is durable.
    pub async fn flush(&self, sync_blobs: bool) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(sync_blobs, move |result| {
            let _ = tx.send(result);
        });
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the flusher has stopped")))
    }
}

fn flush(db: &sled::Db, db_file: &File, blob_dir: Option<&PathBuf>) -> io::Result<()> {
    db.flush().map_err(io::Error::other)?;
    db_file.sync_all()?;
    if let Some(dir) = blob_dir {
        sync_dir_files(dir)?;
    }
    Ok(())
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
