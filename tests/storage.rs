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

/// Runs the crash writer on `dir` until at least `n` entries are acknowledged, then
/// SIGKILLs it; the last index it saw acknowledged.
fn write_until_killed(dir: &std::path::Path, n: u64) -> u64 {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHORUS_CRASH_WRITER_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut acked = 0u64;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(n_acked) = line.strip_prefix("acked ") {
            acked = n_acked.parse().unwrap();
            if acked >= n {
                break;
            }
        }
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    assert!(acked >= n, "the writer stopped early at {acked}");
    acked
}

#[tokio::test]
async fn acknowledged_entries_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Kill at an arbitrary point well into the run: after 200 acknowledged batches.
    let acked = write_until_killed(dir.path(), 1600);

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

/// A copy of `from` in a new temporary directory, with its `db` file changed by `damage`.
fn damaged_copy(
    from: &std::path::Path,
    damage: impl FnOnce(&std::fs::File, u64),
) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    copy_dir(from, to.path());
    let db = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(to.path().join("db"))
        .unwrap();
    let len = db.metadata().unwrap().len();
    damage(&db, len);
    db.sync_all().unwrap();
    to
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// sled takes an unreadable record for the torn end of its log and drops everything after
/// it: a store whose `db` file was cut short, or had one bit flipped, used to open with its
/// log rolled back and say nothing. It is refused, naming the file and what was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_log_was_cut_short_or_flipped_is_refused_naming_the_file() {
    use std::os::unix::fs::FileExt;
    // A writer killed mid-run, as a master would be: sled recovers by replaying its log.
    let dir = tempfile::tempdir().unwrap();
    let acked = write_until_killed(dir.path(), 2000);

    // Cut and flipped at several depths: early ones sled itself refuses; late ones it
    // used to take for a torn tail.
    let mut damaged = Vec::new();
    // The end of what sled wrote (the file is preallocated with zeros past it).
    let written = {
        let bytes = std::fs::read(dir.path().join("db")).unwrap();
        bytes.iter().rposition(|b| *b != 0).unwrap() as u64
    };
    for back in [64u64, 512, 2048, 8192] {
        let at = written - back;
        damaged.push((
            format!("cut {back} bytes before the end"),
            damaged_copy(dir.path(), move |db, _| db.set_len(at).unwrap()),
        ));
        damaged.push((
            format!("flipped {back} bytes before the end"),
            damaged_copy(dir.path(), move |db, _| {
                let mut byte = [0];
                db.read_exact_at(&mut byte, at).unwrap();
                db.write_all_at(&[byte[0] ^ 0x04], at).unwrap();
            }),
        ));
    }
    for permille in [333, 500, 900, 970, 995] {
        let at = move |len: u64| len * permille / 1000;
        damaged.push((
            format!("cut at {permille}‰"),
            damaged_copy(dir.path(), move |db, len| db.set_len(at(len)).unwrap()),
        ));
        damaged.push((
            format!("flipped at {permille}‰"),
            damaged_copy(dir.path(), move |db, len| {
                let mut byte = [0];
                db.read_exact_at(&mut byte, at(len)).unwrap();
                db.write_all_at(&[byte[0] ^ 0x04], at(len)).unwrap();
            }),
        ));
    }
    // Each is refused at open naming the file, or (when what was damaged held nothing
    // still in use) opens whole; never a shorter log, never a wrong entry.
    let mut refused = 0;
    for (how, damaged) in &damaged {
        let db = damaged.path().join("db").display().to_string();
        let mut store = match storage::open(damaged.path()) {
            Ok(store) => store,
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::InvalidData,
                    "{how}: {error}"
                );
                let message = error.to_string();
                assert!(message.contains(&db), "{how}: {message}");
                assert!(message.contains("damaged"), "{how}: {message}");
                refused += 1;
                continue;
            }
        };
        let state = store.log.get_log_state().await.unwrap();
        let last = state.last_log_id.map_or(0, |id| id.index);
        assert!(last >= acked, "{how}: the log shrank to {last} of {acked}");
        match store.log.try_get_log_entries(1..=acked).await {
            Ok(entries) => {
                let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
                assert_eq!(indexes, (1..=acked).collect::<Vec<_>>(), "{how}");
            }
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::InvalidData,
                    "{how}: {error}"
                );
                assert!(error.to_string().contains(&db), "{how}: {error}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 4,
        "only {refused} of {} were found damaged",
        damaged.len()
    );
}

/// sled reads a `conf` file that is no longer UTF-8 (one flipped bit) as a database of
/// an older sled version. That is damage like any other, refused naming the file and
/// the recovery (the chaos suite's corrupt-stopped nemesis found it reported as a
/// version mismatch, with no recovery given).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_sled_conf_was_flipped_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    write_until_killed(dir.path(), 50);
    let conf = dir.path().join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    bytes[0] ^= 0x80;
    std::fs::write(&conf, bytes).unwrap();
    let error = storage::open(dir.path())
        .err()
        .expect("a flipped conf was opened");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    let message = error.to_string();
    assert!(message.contains(&conf.display().to_string()), "{message}");
    assert!(message.contains("damaged"), "{message}");
}
