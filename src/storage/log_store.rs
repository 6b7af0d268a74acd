//! The Raft log and vote in sled.
//!
//! Layout: tree `log` maps the big-endian index to a checksummed entry
//! ([`super::checksum`]), so sled's key order is log order; tree `meta` holds the vote,
//! the committed log id and the last purged log id, checksummed too.
//!
//! Invariants:
//! - The indexes in `log` are consecutive: append adds at the end, truncate removes from
//!   the end backwards, purge removes from the front after recording `last_purged`.
//! - An append is acknowledged (its `IOFlushed` fires) only after the entries and
//!   everything written before them are fsync-durable; the vote is durable before
//!   `save_vote` returns. sled recovers a prefix of its writes, so a durable append also
//!   makes every earlier truncate, purge and commit mark durable.
//! - The high-water mark ([`super::mark`]) is never ahead of the durable log: appends
//!   raise it once flushed, and a truncation lowers it, durably, before removing
//!   anything.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::checksum;
use super::durable::{Flusher, Moved};
use super::mark::Mark;
use crate::type_config::{Entry, LogId, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The log store handed to openraft.
pub struct LogStore {
    trees: LogReader,
    flusher: Flusher,
}

/// A reader of the log, one per replication stream.
#[derive(Clone)]
pub struct LogReader {
    log: sled::Tree,
    meta: sled::Tree,
    /// The database file, named when a value is found damaged.
    db: Arc<Path>,
}

/// What a store holds before Raft starts on it.
pub struct Found {
    /// How far its vote and log reach.
    pub mark: Mark,
    /// It has never voted nor logged anything: a master starting with it knows nothing
    /// of any group.
    pub pristine: bool,
}

impl Found {
    /// Reads it from the log trees of `db`, in `dir`.
    pub fn read(db: &sled::Db, dir: &Path) -> io::Result<Found> {
        let trees = LogReader::open(db, dir)?;
        let vote = trees.read_meta::<Vote>(VOTE)?;
        let last_purged = trees.read_meta::<LogId>(LAST_PURGED)?;
        Ok(Found {
            mark: Mark {
                vote,
                last_log_id: trees.last_log_id()?.max(last_purged),
            },
            pristine: trees.log.is_empty() && vote.is_none() && last_purged.is_none(),
        })
    }
}

impl LogStore {
    /// Opens the log trees of `db`, in `dir`.
    pub fn open(db: &sled::Db, flusher: Flusher, dir: &Path) -> io::Result<Self> {
        Ok(LogStore {
            trees: LogReader::open(db, dir)?,
            flusher,
        })
    }

    fn reader(&self) -> LogReader {
        self.trees.clone()
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> io::Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn sled_err(e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn to_sled_range(range: impl RangeBounds<u64>) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let map = |b: Bound<&u64>| match b {
        Bound::Included(i) => Bound::Included(key(*i)),
        Bound::Excluded(i) => Bound::Excluded(key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (map(range.start_bound()), map(range.end_bound()))
}

impl LogReader {
    fn open(db: &sled::Db, dir: &Path) -> io::Result<Self> {
        Ok(LogReader {
            log: db.open_tree("log").map_err(io::Error::other)?,
            meta: db.open_tree("meta").map_err(io::Error::other)?,
            db: dir.join("db").into(),
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, name: &[u8]) -> io::Result<Option<T>> {
        self.meta
            .get(name)
            .map_err(sled_err)?
            .map(|bytes| {
                checksum::open(&bytes, &|| {
                    format!(
                        "{}: the {}",
                        self.db.display(),
                        String::from_utf8_lossy(name)
                    )
                })
            })
            .transpose()
    }

    fn write_meta<T: serde::Serialize>(&self, name: &[u8], value: &T) -> io::Result<()> {
        self.meta
            .insert(name, checksum::seal(value)?)
            .map_err(sled_err)?;
        Ok(())
    }

    fn decode_entry(&self, index: u64, bytes: &[u8]) -> io::Result<Entry> {
        let entry: Entry = checksum::open(bytes, &|| {
            format!("{}: log entry {index}", self.db.display())
        })?;
        if entry.log_id.index != index {
            return Err(super::damaged(
                &self.db,
                &format!(
                    "log entry {index} holds the entry of index {}",
                    entry.log_id.index
                ),
            ));
        }
        Ok(entry)
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry>> {
        let mut entries: Vec<Entry> = Vec::new();
        for item in self.log.range(to_sled_range(range)) {
            let (k, v) = item.map_err(sled_err)?;
            let index = index_of(&k)?;
            let entry = self.decode_entry(index, &v)?;
            if let Some(prev) = entries.last() {
                if prev.log_id.index + 1 != index {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("hole in the log between {} and {index}", prev.log_id.index),
                    ));
                }
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn last_log_id(&self) -> io::Result<Option<LogId>> {
        match self.log.last().map_err(sled_err)? {
            Some((k, v)) => Ok(Some(self.decode_entry(index_of(&k)?, &v)?.log_id)),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.entries(range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(VOTE)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.reader().entries(range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.trees.read_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.trees.read_meta(LAST_PURGED)?;
        // A purge records its point before removing entries, and may purge past the end
        // of the log (after a snapshot install): a crash in between leaves entries at or
        // below the purge point, which are as good as gone.
        let last_log_id = self.reader().last_log_id()?.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.trees.write_meta(VOTE, vote)?;
        self.flusher.flush_moved(Some(Moved::Voted(*vote))).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed here: the next durable append or vote carries it to disk, and a
        // committed mark older than the truth only means re-applying a little more.
        self.trees.write_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.trees.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Plain inserts in index order, not a sled batch: a crash keeps a prefix of them,
        // which is a shorter log without a hole, and a batch costs two more log writes
        // (sled seals its buffer before and after the batch manifest), which doubled the
        // IO-thread work of every append. Readable as soon as this returns; acknowledged
        // once the flusher has synced it.
        let mut last = None;
        for entry in entries {
            self.trees
                .log
                .insert(key(entry.log_id.index), checksum::seal(&entry)?)
                .map_err(sled_err)?;
            last = Some(entry.log_id);
        }
        self.flusher
            .submit(last.map(Moved::Appended), move |result| {
                callback.io_completed(result)
            });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        tracing::debug!(from, "truncating the log");
        // The mark comes down first: a crash midway must not leave it above the log.
        self.flusher
            .flush_moved(Some(Moved::TruncatingAfter(last_log_id)))
            .await?;
        // Removing from the end backwards never leaves a hole, even if interrupted.
        let keys: Vec<_> = self
            .trees
            .log
            .range(key(from)..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(sled_err)?;
        let mut batch = sled::Batch::default();
        for k in keys.into_iter().rev() {
            batch.remove(k);
        }
        self.trees.log.apply_batch(batch).map_err(sled_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        tracing::debug!(upto = log_id.index, "purging the log");
        // Record the purge point first: a crash in between leaves extra entries at the
        // front, never a log that claims entries it no longer has.
        self.trees.write_meta(LAST_PURGED, &log_id)?;
        // One remove at a time, oldest first: a crash keeps a suffix of the purged entries,
        // all at or below the purge point. Not one sled batch: sled copies a leaf node for
        // every change and frees the copies only when the batch ends, so purging the 100k
        // entries a snapshot covers in one batch peaked at ~170 MB of garbage.
        let keys: Vec<_> = self
            .trees
            .log
            .range(..=key(log_id.index))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(sled_err)?;
        for k in keys {
            self.trees.log.remove(k).map_err(sled_err)?;
        }
        Ok(())
    }
}
