//! The Raft log and vote in sled.
//!
//! Layout: tree `log` maps the big-endian index to a postcard-encoded entry, so sled's
//! key order is log order; tree `meta` holds the vote, the committed log id and the last
//! purged log id.
//!
//! Invariants:
//! - The indexes in `log` are consecutive: append adds at the end, truncate removes from
//!   the end backwards, purge removes from the front after recording `last_purged`.
//! - An append is acknowledged (its `IOFlushed` fires) only after the entries and
//!   everything written before them are fsync-durable; the vote is durable before
//!   `save_vote` returns. sled recovers a prefix of its writes, so a durable append also
//!   makes every earlier truncate, purge and commit mark durable.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::durable::Flusher;
use crate::codec;
use crate::type_config::{Entry, LogId, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The log store handed to openraft.
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    flusher: Flusher,
}

/// A reader of the log, one per replication stream.
#[derive(Clone)]
pub struct LogReader {
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    /// Opens the log trees of `db`.
    pub fn open(db: &sled::Db, flusher: Flusher) -> io::Result<Self> {
        Ok(LogStore {
            log: db.open_tree("log").map_err(io::Error::other)?,
            meta: db.open_tree("meta").map_err(io::Error::other)?,
            flusher,
        })
    }

    fn reader(&self) -> LogReader {
        LogReader {
            log: self.log.clone(),
            meta: self.meta.clone(),
        }
    }

    /// Whether this store has never voted nor logged anything: a master starting with it
    /// knows nothing of any group.
    pub fn is_pristine(&self) -> io::Result<bool> {
        Ok(self.log.is_empty()
            && read_meta::<Vote>(&self.meta, VOTE)?.is_none()
            && read_meta::<LogId>(&self.meta, LAST_PURGED)?.is_none())
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

fn read_meta<T: serde::de::DeserializeOwned>(
    meta: &sled::Tree,
    name: &[u8],
) -> io::Result<Option<T>> {
    meta.get(name)
        .map_err(sled_err)?
        .map(|bytes| codec::decode(&bytes))
        .transpose()
}

fn write_meta<T: serde::Serialize>(meta: &sled::Tree, name: &[u8], value: &T) -> io::Result<()> {
    meta.insert(name, codec::encode(value)?).map_err(sled_err)?;
    Ok(())
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
    fn entries(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry>> {
        let mut entries: Vec<Entry> = Vec::new();
        for item in self.log.range(to_sled_range(range)) {
            let (k, v) = item.map_err(sled_err)?;
            let entry: Entry = codec::decode(&v)?;
            let index = index_of(&k)?;
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
            Some((_, v)) => Ok(Some(codec::decode::<Entry>(&v)?.log_id)),
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
        read_meta(&self.meta, VOTE)
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
        read_meta(&self.meta, VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = read_meta(&self.meta, LAST_PURGED)?;
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
        write_meta(&self.meta, VOTE, vote)?;
        self.flusher.flush().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed here: the next durable append or vote carries it to disk, and a
        // committed mark older than the truth only means re-applying a little more.
        write_meta(&self.meta, COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(read_meta::<Option<LogId>>(&self.meta, COMMITTED)?.flatten())
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
        for entry in entries {
            self.log
                .insert(key(entry.log_id.index), codec::encode(&entry)?)
                .map_err(sled_err)?;
        }
        self.flusher
            .submit(move |result| callback.io_completed(result));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        tracing::debug!(from, "truncating the log");
        // Removing from the end backwards never leaves a hole, even if interrupted.
        let keys: Vec<_> = self
            .log
            .range(key(from)..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(sled_err)?;
        let mut batch = sled::Batch::default();
        for k in keys.into_iter().rev() {
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(sled_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        tracing::debug!(upto = log_id.index, "purging the log");
        // Record the purge point first: a crash in between leaves extra entries at the
        // front, never a log that claims entries it no longer has.
        write_meta(&self.meta, LAST_PURGED, &log_id)?;
        // One remove at a time, oldest first: a crash keeps a suffix of the purged entries,
        // all at or below the purge point. Not one sled batch: sled copies a leaf node for
        // every change and frees the copies only when the batch ends, so purging the 100k
        // entries a snapshot covers in one batch peaked at ~170 MB of garbage.
        let keys: Vec<_> = self
            .log
            .range(..=key(log_id.index))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(sled_err)?;
        for k in keys {
            self.log.remove(k).map_err(sled_err)?;
        }
        Ok(())
    }
}
