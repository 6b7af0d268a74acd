//! Durable storage on sled: the Raft log, the vote and the committed mark in one database
//! per master, and the latest snapshot in a database of its own beside it.
//!
//! sled alone is not durable enough for Raft (see [`durable`]): every acknowledgement
//! waits for an explicit flush and fsync, batched across concurrent writers.
//!
//! Nor does it tell damage from a torn write: every stored value carries a checksum
//! ([`checksum`]), and a high-water mark outside sled ([`mark`]) records how far the
//! log and vote durably reached, so a store that lost some of them is refused at open
//! instead of serving, voting or leading from a rolled-back log.

mod checksum;
pub mod durable;
mod log_store;
pub mod mark;
mod snapshot_store;

use std::io;
use std::path::Path;

pub use durable::{Flusher, FlusherThread};
pub use log_store::{LogReader, LogStore};
pub use snapshot_store::{ChunkWriter, SnapshotData, SnapshotStore, Staged};

/// Creates `dir` (and its parents) if needed and makes it readable by its owner only:
/// it holds every session's tokens. An existing, more open one is closed down too.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Everything a master keeps on disk.
pub struct Store {
    /// The Raft log and vote.
    pub log: LogStore,
    /// The latest snapshot.
    pub snapshots: SnapshotStore,
    /// The flusher thread, which outlives the stores that use it.
    pub flusher: FlusherThread,
    /// The store had never voted nor logged anything when opened: a master starting
    /// with it knows nothing of any group.
    pub pristine: bool,
}

/// sled's page cache. Its default, 1 GiB, is sized for sled as a whole database; here
/// it holds the log's recent entries (which replication reads), while the state lives
/// in memory anyway. At the default, a master loaded with 1M
/// connections passed 1.4 GiB of RSS.
const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens (creating if needed) the database in `dir`.
pub fn open(dir: &Path) -> io::Result<Store> {
    private_dir(dir)?;
    // The data dir's own name must be durable too.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    let db = open_sled(dir, SLED_CACHE_BYTES)?;
    // Make the database's files durable by name before anything is acknowledged.
    db.flush().map_err(io::Error::other)?;
    durable::sync_dir_files(dir)?;
    let found = log_store::Found::read(&db, dir)?;
    let (mark_file, marked) = mark::MarkFile::open(dir, found.mark)?;
    match marked {
        Some(marked) => mark::check(&marked, &found.mark, &dir.join("db"))?,
        None if !found.pristine => {
            return Err(damaged(
                mark_file.path(),
                "is missing, so whether the log lost entries cannot be told (a data dir \
                 of a Chorus older than the mark, or the file was deleted)",
            ));
        }
        None => {}
    }
    let (flusher, thread) = Flusher::start(db.clone(), dir, mark_file, found.mark)?;
    Ok(Store {
        log: LogStore::open(&db, flusher.clone(), dir)?,
        snapshots: SnapshotStore::open(&db, flusher, dir)?,
        flusher: thread,
        pristine: found.pristine,
    })
}

/// The error of a store found damaged: it names the file and what is wrong with it, and
/// tells the operator what to do. A master never starts on such a store.
pub fn damaged(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {what}. This master's data is damaged and it will not start on it: remove \
             it from the membership from a healthy master, move its data dir away, start it \
             on an empty one and add it back (docs/operations.md, \"A damaged data dir\")",
            path.display()
        ),
    )
}

/// Opens (creating if needed) a sled database in `dir` with a page cache of
/// `cache_bytes`, and without sled's background flush thread: every write that matters
/// is made durable explicitly, and a second flusher would only add I/O (and a 500 ms
/// wait on close).
fn open_sled(dir: &Path, cache_bytes: u64) -> io::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| match e {
            // An I/O error (permissions, sled's lock held by another process) is the
            // operator's to fix; anything else sled cannot make sense of is damage: a
            // bit flipped in its `conf` reads as a database of an older sled version.
            sled::Error::Io(e) => io::Error::new(
                e.kind(),
                format!("cannot open sled in {}: {e}", dir.display()),
            ),
            sled::Error::Unsupported(_) => {
                damaged(&dir.join("conf"), &format!("sled cannot read it ({e})"))
            }
            e => damaged(&dir.join("db"), &format!("sled cannot read it ({e})")),
        })
}
