//! The latest snapshot in sled, replaced atomically.
//!
//! Layout: tree `snapshot` holds `meta` (postcard-encoded snapshot meta) and the data cut
//! into `data/<n>` chunks, so no single value is huge.
//!
//! Invariants:
//! - The stored snapshot only moves forward: openraft builds snapshots in a task of its
//!   own, concurrently with installs received from the leader, and a build of an older
//!   state finishing after a newer install must not replace it (the log is already
//!   purged up to the newer one).
//! - A save replaces meta and chunks in one sled batch, and saves and loads exclude each
//!   other, so a load never pairs one snapshot's meta with another's data.

use std::io;
use std::sync::{Arc, Mutex};

use super::codec;
use super::durable::{CHUNK_BYTES, Flusher};
use crate::raft::SnapshotMeta;

const META: &[u8] = b"meta";
const DATA_PREFIX: &[u8] = b"data/";

/// Stores and loads the latest snapshot.
#[derive(Clone)]
pub struct SnapshotStore {
    tree: sled::Tree,
    flusher: Flusher,
    /// Serializes saves and loads: sled's scans are not isolated from batches.
    lock: Arc<Mutex<()>>,
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
            lock: Arc::default(),
        })
    }

    /// Replaces the stored snapshot unless it already covers as much of the log, and waits
    /// until the result is durable. Returns whether it replaced anything.
    pub async fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let replaced = {
            let _guard = self.lock.lock().expect("snapshot lock poisoned");
            let stored: Option<SnapshotMeta> = self
                .tree
                .get(META)
                .map_err(io::Error::other)?
                .map(|bytes| codec::decode(&bytes))
                .transpose()?;
            if stored.is_some_and(|stored| stored.last_log_id >= meta.last_log_id) {
                false
            } else {
                let mut batch = sled::Batch::default();
                for key in self.tree.scan_prefix(DATA_PREFIX).keys() {
                    batch.remove(key.map_err(io::Error::other)?);
                }
                for (n, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
                    batch.insert(chunk_key(n as u64), chunk);
                }
                batch.insert(META, codec::encode(meta)?);
                self.tree.apply_batch(batch).map_err(io::Error::other)?;
                true
            }
        };
        self.flusher.flush().await?;
        Ok(replaced)
    }

    /// The stored snapshot's meta and data, if there is one.
    pub fn load(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let _guard = self.lock.lock().expect("snapshot lock poisoned");
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
