//! The sled store: openraft's storage suite, and durability across a SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chorus::raft::{StateMachineStore, TypeConfig};
use chorus::storage::{self, FlusherThread, LogStore};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{RaftLogReader, StorageError};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, (tempfile::TempDir, FlusherThread)>
    for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            (tempfile::TempDir, FlusherThread),
            LogStore,
            StateMachineStore,
        ),
        StorageError<TypeConfig>,
    > {
        let io = |e: std::io::Error| StorageError::write(TypeConfig::err_from_error(&e));
        let dir = tempfile::tempdir().map_err(io)?;
        let store = storage::open(dir.path()).map_err(io)?;
        let state_machine = StateMachineStore::open(store.snapshots.clone()).map_err(io)?;
        Ok(((dir, store.flusher), store.log, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(SledBuilder).await
}

/// The child half of `acknowledged_entries_survive_sigkill`: appends blank entries in
/// batches forever and prints the last index of each batch once it is acknowledged.
#[tokio::test]
async fn crash_writer_child() {
    let Ok(dir) = std::env::var("CHORUS_CRASH_WRITER_DIR") else {
        return; // Only meaningful when spawned by the parent test.
    };
    let mut store = storage::open(std::path::Path::new(&dir)).unwrap();
    let mut index = 0u64;
    loop {
        let batch: Vec<_> = (0..8)
            .map(|_| {
                index += 1;
                openraft::testing::blank_ent::<TypeConfig>(1, 1, index)
            })
            .collect();
        let (tx, rx) = TypeConfig::oneshot();
        store
            .log
            .append(batch, IOFlushed::signal(tx))
            .await
            .unwrap();
        rx.await.unwrap().unwrap();
        println!("acked {index}");
    }
}

/// The writer never stops by itself: whatever happens to the test, it is killed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn acknowledged_entries_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHORUS_CRASH_WRITER_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut acked = 0u64;
    // Kill at an arbitrary point well into the run: after 200 acknowledged batches.
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
            if acked >= 1600 {
                break;
            }
        }
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    assert!(acked >= 1600, "the writer stopped early at {acked}");

    let mut store = storage::open(dir.path()).unwrap();
    let state = store.log.get_log_state().await.unwrap();
    let last = state
        .last_log_id
        .expect("log is empty after the crash")
        .index;
    assert!(
        last >= acked,
        "acknowledged up to {acked}, but only {last} survived"
    );
    let entries = store.log.try_get_log_entries(1..=acked).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(
        indexes,
        (1..=acked).collect::<Vec<_>>(),
        "an acknowledged entry is missing"
    );
}
