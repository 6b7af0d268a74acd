//! The latest snapshot in sled, replaced atomically.
//!
//! Layout: tree `snapshot` holds `meta` (postcard-encoded snapshot meta) and the data cut
//! into `data/<n>` chunks. Chunks keep every value small enough to stay inside sled's
//! segments, which the flusher fsyncs (large values would become unsynced blob files).
//! The new snapshot replaces the old in one sled batch, so a crash leaves one or the
//! other, never a mix.

use std::io;

use super::codec;
use super::durable::{Flusher, INLINE_VALUE_LIMIT};
use crate::raft::SnapshotMeta;

const META: &[u8] = b"meta";
const DATA_PREFIX: &[u8] = b"data/";

/// Stores and loads the latest snapshot.
#[derive(Clone)]
pub struct SnapshotStore {
    tree: sled::Tree,
    flusher: Flusher,
}

fn chunk_key(n: u64) -> Vec<u8> {
    let mut key = DATA_PREFIX.to_vec();
    key.extend_from_slice(&n.to_be_bytes());
    key
}

impl SnapshotStore {
    /// Opens the snapshot tree of `db`.
    pub fn open(db: &sled::Db, flusher: Flusher) -> io::Result<Self> {
        Ok(SnapshotStore {
            tree: db.open_tree("snapshot").map_err(io::Error::other)?,
            flusher,
        })
    }

    /// Replaces the stored snapshot and waits until the new one is durable.
    pub async fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        for key in self.tree.scan_prefix(DATA_PREFIX).keys() {
            batch.remove(key.map_err(io::Error::other)?);
        }
        for (n, chunk) in data.chunks(INLINE_VALUE_LIMIT).enumerate() {
            batch.insert(chunk_key(n as u64), chunk);
        }
        batch.insert(META, codec::encode(meta)?);
        self.tree.apply_batch(batch).map_err(io::Error::other)?;
        self.flusher.flush(false).await
    }

    /// The stored snapshot's meta and data, if there is one.
    pub fn load(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let Some(meta) = self.tree.get(META).map_err(io::Error::other)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta = codec::decode(&meta)?;
        let mut data = Vec::new();
        for (expected, item) in self.tree.scan_prefix(DATA_PREFIX).enumerate() {
            let (key, chunk) = item.map_err(io::Error::other)?;
            if key.as_ref() != chunk_key(expected as u64).as_slice() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("snapshot chunk {expected} is missing"),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Some((meta, data)))
    }
}
