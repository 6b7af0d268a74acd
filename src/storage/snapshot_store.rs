//! The latest snapshot, each in a sled database of its own.
//!
//! Layout: `<data dir>/snapshots/<generation>/` is a sled database holding one snapshot:
//! `meta` and the data cut into `data/<n>` chunks, so no single value is huge. The main
//! database's `snapshot` tree names the current one (`current`: its generation and meta).
//!
//! Why a database per snapshot: sled keeps the values it was given in memory, well beyond
//! its cache setting, for as long as the database is open. Stored in the main database, a
//! snapshot stayed resident (293 MiB at 1M connections) although it is read only to start
//! or to catch a follower up. A database opened for one save or one load and then closed
//! gives that memory back, and dropping an old snapshot is deleting its directory.
//!
//! Invariants:
//! - The current snapshot only moves forward: openraft builds snapshots in a task of its
//!   own, concurrently with installs received from the leader, and a build of an older
//!   state finishing after a newer install must not replace it (the log is already
//!   purged up to the newer one).
//! - A snapshot's directory is complete and durable before the main database names it,
//!   and the directory it replaced is deleted only once the new name is durable. A
//!   directory nothing durable names is a crash's leftover, deleted at open.
//! - Saves and loads exclude each other, so a load never reads a directory being deleted.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::checksum;
use super::durable::{CHUNK_BYTES, Flusher, sync_dir_files};
use crate::type_config::SnapshotMeta;

/// The main database's key naming the current snapshot.
const CURRENT: &[u8] = b"current";
/// A snapshot database's key for its meta.
const META: &[u8] = b"meta";
const DATA_PREFIX: &[u8] = b"data/";
/// The directory, under the data dir, of the snapshot databases.
const SNAPSHOTS_DIR: &str = "snapshots";

/// What the main database records of the current snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Current {
    /// The name of its directory.
    generation: u64,
    meta: SnapshotMeta,
    /// Its data's length and CRC-32, checked whenever it is read.
    bytes: u64,
    crc: u32,
}

/// A snapshot written and made durable in a directory of its own, not yet current: see
/// [`SnapshotStore::save_staged`].
pub struct Staged {
    meta: SnapshotMeta,
    generation: u64,
    /// Bytes of snapshot data.
    bytes: u64,
    /// The data's CRC-32.
    crc: u32,
}

impl Staged {
    /// The name it is stored under.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The snapshot's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }
}

/// Where [`SnapshotStore::stage`] encodes a snapshot: straight into chunks, never into
/// one buffer of the whole snapshot.
pub struct ChunkWriter {
    chunks: Vec<Vec<u8>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    /// Moves the buffered bytes into the next chunk.
    fn cut(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.chunks.push(full);
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

/// A snapshot's data as openraft carries it: bytes in hand (a snapshot received from the
/// leader), or a stored snapshot, read only when it is sent or installed. openraft asks
/// for the current snapshot twice at every start just for its meta; reading the data
/// each time made a master with 1M connections take seconds longer to start.
pub enum SnapshotData {
    /// The encoded state.
    Bytes(Vec<u8>),
    /// The snapshot stored under this generation.
    Stored {
        store: SnapshotStore,
        generation: u64,
    },
}

impl SnapshotData {
    /// The encoded state, read off the runtime's workers if it is stored. A stored
    /// snapshot replaced since is gone: `NotFound`.
    pub async fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {
            SnapshotData::Bytes(bytes) => Ok(bytes),
            SnapshotData::Stored { store, generation } => {
                blocking(move || store.read(generation)).await
            }
        }
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotData::Bytes(bytes) => write!(f, "{} bytes", bytes.len()),
            SnapshotData::Stored { generation, .. } => write!(f, "stored snapshot {generation}"),
        }
    }
}

/// Stores and loads the latest snapshot.
#[derive(Clone)]
pub struct SnapshotStore {
    /// The main database's tree naming the current snapshot.
    names: sled::Tree,
    flusher: Flusher,
    /// `<data dir>/snapshots`.
    dir: PathBuf,
    /// The generation the next staged snapshot takes.
    next_generation: Arc<AtomicU64>,
    /// Serializes the current name's changes, loads and deletions.
    lock: Arc<Mutex<()>>,
}

fn chunk_key(n: u64) -> Vec<u8> {
    let mut key = DATA_PREFIX.to_vec();
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Opens (creating if needed) the snapshot database in `dir`. Small and short-lived: it
/// only ever receives or yields one snapshot, chunk by chunk.
fn open_db(dir: &Path) -> io::Result<sled::Db> {
    super::open_sled(dir, 4 * CHUNK_BYTES as u64)
}

/// Runs `work` on tokio's blocking threads: writing or reading a snapshot's files takes
/// up to seconds, during which the runtime's workers must go on with heartbeats and
/// appends.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| io::Error::other(format!("snapshot I/O stopped: {e}")))?
}

/// Deletes a snapshot directory; one already gone is fine.
fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl SnapshotStore {
    /// Opens the snapshot store of the master whose main database `db` lives in
    /// `data_dir`, deleting whatever snapshot directory is not the current one.
    pub fn open(db: &sled::Db, flusher: Flusher, data_dir: &Path) -> io::Result<Self> {
        let names = db.open_tree("snapshot").map_err(io::Error::other)?;
        if names.contains_key(META).map_err(io::Error::other)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds its snapshot inside the main database, as Chorus did before \
                     snapshots had a database of their own; this version cannot read it",
                    data_dir.display()
                ),
            ));
        }
        let dir = data_dir.join(SNAPSHOTS_DIR);
        fs::create_dir_all(&dir)?;
        File::open(data_dir)?.sync_all()?;
        let current = read_current(&names)?.map(|c| c.generation);
        let mut newest = current.unwrap_or(0);
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let generation = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok());
            if generation.is_some() && generation == current {
                continue;
            }
            newest = newest.max(generation.unwrap_or(0));
            tracing::info!(dir = %path.display(), "removing a snapshot directory left by a crash");
            remove_dir(&path)?;
        }
        Ok(SnapshotStore {
            names,
            flusher,
            dir,
            next_generation: Arc::new(AtomicU64::new(newest + 1)),
            lock: Arc::default(),
        })
    }

    /// Encodes a snapshot through `encode`, which returns its meta, and stores it in a
    /// new directory, durably. It becomes current only through
    /// [`SnapshotStore::save_staged`]. Whatever `encode` holds (the state's lock, say) is
    /// released before the chunks are written and synced, off the runtime's workers.
    pub async fn stage(
        &self,
        encode: impl FnOnce(&mut ChunkWriter) -> io::Result<SnapshotMeta>,
    ) -> io::Result<Staged> {
        let mut writer = ChunkWriter {
            chunks: Vec::new(),
            buffer: Vec::with_capacity(CHUNK_BYTES),
        };
        let meta = encode(&mut writer)?;
        writer.cut();
        let store = self.clone();
        // Each chunk is freed as soon as sled has its copy.
        blocking(move || store.store(meta, writer.chunks)).await
    }

    /// Stores a snapshot of `meta` and `chunks` in a new directory, durably.
    fn store<C: Into<sled::IVec> + AsRef<[u8]>>(
        &self,
        meta: SnapshotMeta,
        chunks: impl IntoIterator<Item = C>,
    ) -> io::Result<Staged> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(generation.to_string());
        let mut bytes = 0;
        let mut crc = crc32fast::Hasher::new();
        let stored = (|| {
            remove_dir(&dir)?;
            let db = open_db(&dir)?;
            for (n, chunk) in chunks.into_iter().enumerate() {
                bytes += chunk.as_ref().len() as u64;
                crc.update(chunk.as_ref());
                db.insert(chunk_key(n as u64), chunk)
                    .map_err(io::Error::other)?;
            }
            db.insert(META, checksum::seal(&meta)?)
                .map_err(io::Error::other)?;
            db.flush().map_err(io::Error::other)?;
            drop(db);
            // Every file of the database (the chunks are in blob files), then the names.
            sync_dir_files(&dir.join("blobs"))?;
            sync_dir_files(&dir)?;
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = stored {
            let _ = remove_dir(&dir);
            return Err(e);
        }
        Ok(Staged {
            meta,
            generation,
            bytes,
            crc: crc.finalize(),
        })
    }

    /// Replaces the stored snapshot with `meta` and `data` (see [`SnapshotStore::save_staged`]).
    pub async fn save(&self, meta: &SnapshotMeta, data: Vec<u8>) -> io::Result<bool> {
        let (store, meta) = (self.clone(), meta.clone());
        // Straight from `data`: no chunk buffers beside sled's copies.
        let staged = blocking(move || store.store(meta, data.chunks(CHUNK_BYTES))).await?;
        self.save_staged(staged).await
    }

    /// Makes `staged` the current snapshot unless the current one already covers as much
    /// of the log, and waits until that is durable. Returns whether it replaced anything.
    pub async fn save_staged(&self, staged: Staged) -> io::Result<bool> {
        let staged_dir = self.dir.join(staged.generation.to_string());
        let replaced = {
            let _guard = self.lock.lock().expect("snapshot lock poisoned");
            let current = read_current(&self.names)?;
            if current
                .as_ref()
                .is_some_and(|c| c.meta.last_log_id >= staged.meta.last_log_id)
            {
                remove_dir(&staged_dir)?;
                return Ok(false);
            }
            let name = Current {
                generation: staged.generation,
                meta: staged.meta,
                bytes: staged.bytes,
                crc: staged.crc,
            };
            self.names
                .insert(CURRENT, checksum::seal(&name)?)
                .map_err(io::Error::other)?;
            current.map(|c| c.generation)
        };
        self.flusher.flush().await?;
        if let Some(old) = replaced {
            let _guard = self.lock.lock().expect("snapshot lock poisoned");
            remove_dir(&self.dir.join(old.to_string()))?;
        }
        Ok(true)
    }

    /// The stored snapshot's meta and data, if there is one.
    pub fn load(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let current = {
            let _guard = self.lock.lock().expect("snapshot lock poisoned");
            read_current(&self.names)?
        };
        match current {
            Some(current) => Ok(Some((current.meta, self.read(current.generation)?))),
            None => Ok(None),
        }
    }

    /// The stored snapshot's meta, and its data unread, if there is one.
    pub fn current(&self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        let _guard = self.lock.lock().expect("snapshot lock poisoned");
        Ok(read_current(&self.names)?.map(|current| {
            let data = self.stored(current.generation);
            (current.meta, data)
        }))
    }

    /// The data of the snapshot stored under `generation`, unread.
    pub fn stored(&self, generation: u64) -> SnapshotData {
        SnapshotData::Stored {
            store: self.clone(),
            generation,
        }
    }

    /// Reads the snapshot stored under `generation`.
    fn read(&self, generation: u64) -> io::Result<Vec<u8>> {
        let _guard = self.lock.lock().expect("snapshot lock poisoned");
        let current = read_current(&self.names)?;
        let Some(current) = current.filter(|c| c.generation == generation) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("snapshot {generation} was replaced by a newer one"),
            ));
        };
        let dir = self.dir.join(current.generation.to_string());
        let db = open_db(&dir)?;
        let unreadable =
            |e: sled::Error| super::damaged(&dir, &format!("sled cannot read it: {e}"));
        let stored: Option<SnapshotMeta> = db
            .get(META)
            .map_err(unreadable)?
            .map(|bytes| checksum::open(&bytes, &|| format!("{}: the meta", dir.display())))
            .transpose()?;
        if stored.map(|m| m.last_log_id) != Some(current.meta.last_log_id) {
            return Err(super::damaged(
                &dir,
                &format!(
                    "it does not hold snapshot {} the store names (its meta is missing or \
                     another snapshot's)",
                    current.generation
                ),
            ));
        }
        let mut data = Vec::new();
        for (expected, item) in db.scan_prefix(DATA_PREFIX).enumerate() {
            let (key, chunk) = item.map_err(unreadable)?;
            if key.as_ref() != chunk_key(expected as u64).as_slice() {
                return Err(super::damaged(
                    &dir,
                    &format!("the snapshot's chunk {expected} is missing"),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        if data.len() as u64 != current.bytes || crc32fast::hash(&data) != current.crc {
            return Err(super::damaged(
                &dir,
                &format!(
                    "the snapshot's data ({} bytes) is not what was stored ({} bytes, CRC-32 \
                     {:08x})",
                    data.len(),
                    current.bytes,
                    current.crc
                ),
            ));
        }
        Ok(data)
    }
}

fn read_current(names: &sled::Tree) -> io::Result<Option<Current>> {
    names
        .get(CURRENT)
        .map_err(io::Error::other)?
        .map(|bytes| checksum::open(&bytes, &|| "the current snapshot's name".into()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::type_config::TypeConfig;

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
        assert!(save(&store, 10, &large).await);
        assert_eq!(store.snapshots.load().unwrap().unwrap().1, large);

        assert!(save(&store, 20, b"small").await);
        let (stored, data) = store.snapshots.load().unwrap().unwrap();
        assert_eq!(stored.last_log_id, meta(20).last_log_id);
        assert_eq!(data, b"small", "no chunk of the older snapshot is left");

        // An older snapshot never replaces a newer one.
        assert!(!save(&store, 15, &large).await);
        assert_eq!(store.snapshots.load().unwrap().unwrap().1, b"small");
        assert_eq!(
            snapshot_dirs(dir.path()).len(),
            1,
            "replaced snapshots are deleted"
        );
    }

    #[tokio::test]
    async fn stored_data_is_read_when_asked_and_is_gone_once_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::open(dir.path()).unwrap();
        assert!(save(&store, 10, b"ten").await);
        let (stored, data) = store.snapshots.current().unwrap().unwrap();
        assert_eq!(stored.last_log_id, meta(10).last_log_id);
        let (_, same) = store.snapshots.current().unwrap().unwrap();
        assert_eq!(same.into_bytes().await.unwrap(), b"ten");

        assert!(save(&store, 20, b"twenty").await);
        let err = data
            .into_bytes()
            .await
            .expect_err("the data of a replaced snapshot");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn a_data_dir_with_the_snapshot_inside_the_main_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("snapshot").unwrap();
            tree.insert(META, codec::encode(&meta(10)).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let Err(err) = crate::storage::open(dir.path()) else {
            panic!("a data dir in the old layout opened");
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(
            err.to_string().contains("inside the main database"),
            "{err}"
        );
    }

    /// Saves `data` as the snapshot up to `index`; whether it became current.
    async fn save(store: &crate::storage::Store, index: u64, data: &[u8]) -> bool {
        store
            .snapshots
            .save(&meta(index), data.to_vec())
            .await
            .unwrap()
    }

    fn snapshot_dirs(data_dir: &Path) -> Vec<String> {
        fs::read_dir(data_dir.join(SNAPSHOTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_reopened_store_loads_the_current_snapshot_and_deletes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::open(dir.path()).unwrap();
        assert!(save(&store, 10, b"ten").await);
        // A snapshot staged but never named current, as a crash before the switch
        // leaves it.
        let orphan = store
            .snapshots
            .stage(|w| {
                io::Write::write_all(w, b"eleven")?;
                Ok(meta(11))
            })
            .await
            .unwrap();
        assert_eq!(snapshot_dirs(dir.path()).len(), 2);
        drop(orphan);
        let crate::storage::Store {
            log,
            snapshots,
            flusher,
            ..
        } = store;
        drop((log, snapshots));
        flusher
            .finished(std::time::Duration::from_secs(10))
            .await
            .expect("the flusher stops with its stores")
            .unwrap();

        let store = crate::storage::open(dir.path()).unwrap();
        let (stored, data) = store.snapshots.load().unwrap().unwrap();
        assert_eq!(stored.last_log_id, meta(10).last_log_id);
        assert_eq!(data, b"ten");
        assert_eq!(snapshot_dirs(dir.path()).len(), 1, "the orphan is gone");
        assert!(save(&store, 12, b"twelve").await);
        assert_eq!(store.snapshots.load().unwrap().unwrap().1, b"twelve");
    }
}
