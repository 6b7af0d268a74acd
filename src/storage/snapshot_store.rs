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

use std::io::{self, Write as _};
use std::sync::{Arc, Mutex};

use super::codec;
use super::durable::{CHUNK_BYTES, Flusher};
use crate::raft::SnapshotMeta;

const META: &[u8] = b"meta";
const DATA_PREFIX: &[u8] = b"data/";

/// A snapshot cut into chunks, ready for [`SnapshotStore::save_staged`]. Encoding into
/// it never holds the whole snapshot in one buffer: each chunk goes into the batch as
/// soon as it is full.
pub struct Staged {
    meta: SnapshotMeta,
    batch: sled::Batch,
    /// Chunks in the batch.
    chunks: u64,
    /// Bytes in the batch.
    bytes: u64,
}

impl Staged {
    /// Stages `meta` and whatever `encode` writes.
    pub fn encode(
        meta: SnapshotMeta,
        encode: impl FnOnce(&mut ChunkWriter) -> io::Result<()>,
    ) -> io::Result<Staged> {
        let mut writer = ChunkWriter {
            staged: Staged {
                meta,
                batch: sled::Batch::default(),
                chunks: 0,
                bytes: 0,
            },
            buffer: Vec::with_capacity(CHUNK_BYTES),
        };
        encode(&mut writer)?;
        writer.cut();
        Ok(writer.staged)
    }

    /// The snapshot's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }
}

/// Where [`Staged::encode`] writes.
pub struct ChunkWriter {
    staged: Staged,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    /// Moves the buffered bytes into the batch as the next chunk.
    fn cut(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let staged = &mut self.staged;
        staged
            .batch
            .insert(chunk_key(staged.chunks), self.buffer.as_slice());
        staged.chunks += 1;
        staged.bytes += self.buffer.len() as u64;
        self.buffer.clear();
    }
}

impl io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.cut();
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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

    /// Replaces the stored snapshot with `meta` and `data` (see [`SnapshotStore::save_staged`]).
    pub async fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let staged = Staged::encode(meta.clone(), |w| w.write_all(data))?;
        self.save_staged(staged).await
    }

    /// Replaces the stored snapshot unless it already covers as much of the log, and waits
    /// until the result is durable. Returns whether it replaced anything.
    pub async fn save_staged(&self, staged: Staged) -> io::Result<bool> {
        let Staged {
            meta,
            mut batch,
            chunks,
            ..
        } = staged;
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
                // The staged chunks overwrite the old ones of the same numbers; the old
                // snapshot's chunks beyond go.
                for key in self.tree.range(chunk_key(chunks)..).keys() {
                    let key = key.map_err(io::Error::other)?;
                    if !key.starts_with(DATA_PREFIX) {
                        break;
                    }
                    batch.remove(key);
                }
                batch.insert(META, codec::encode(&meta)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::TypeConfig;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, index)),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_smaller_snapshot_replaces_every_chunk_of_a_larger_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::open(dir.path()).unwrap();
        let large: Vec<u8> = (0..CHUNK_BYTES * 5 / 2).map(|i| i as u8).collect();
        assert!(store.snapshots.save(&meta(10), &large).await.unwrap());
        assert_eq!(store.snapshots.load().unwrap().unwrap().1, large);

        assert!(store.snapshots.save(&meta(20), b"small").await.unwrap());
        let (stored, data) = store.snapshots.load().unwrap().unwrap();
        assert_eq!(stored.last_log_id, meta(20).last_log_id);
        assert_eq!(data, b"small", "no chunk of the older snapshot is left");

        // An older snapshot never replaces a newer one.
        assert!(!store.snapshots.save(&meta(15), &large).await.unwrap());
        assert_eq!(store.snapshots.load().unwrap().unwrap().1, b"small");
    }
}
