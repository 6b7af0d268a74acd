//! The adapter between openraft and the pure [`State`]: applies committed entries,
//! builds and installs snapshots. It holds no business rule.
//!
//! As in Consul, the state lives in memory and the log in the store: at start the state is
//! the latest snapshot, and openraft re-applies the committed log after it.
//!
//! Invariants:
//! - `applied.last_applied` is the log id of the last entry folded into `applied.state`;
//!   it only moves forward, except when a snapshot replaces the state wholesale.
//! - A snapshot reported by `get_current_snapshot` is durable.

use std::io;
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use crate::codec;
use crate::state::{Outcome, State};
use crate::storage::{SnapshotData, SnapshotStore};
use crate::type_config::{LogId, SnapshotMeta, StoredMembership, TypeConfig};

/// The applied state as the rest of the master reads it.
#[derive(Debug, Default)]
pub struct Applied {
    /// The replicated domain state.
    pub state: State,
    /// The last log id applied to `state`.
    pub last_applied: Option<LogId>,
    /// The last membership config applied.
    pub membership: StoredMembership,
}

/// A shared, read-mostly handle on the applied state.
pub type SharedApplied = Arc<RwLock<Applied>>;

/// The state machine handed to openraft.
pub struct StateMachineStore {
    applied: SharedApplied,
    snapshots: SnapshotStore,
    /// The last event id applied, for the watchers of events.
    last_event: Arc<tokio::sync::watch::Sender<u64>>,
}

/// A snapshot as openraft moves it: the postcard encoding of [`State`].
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

impl StateMachineStore {
    /// Rebuilds the in-memory state from the latest durable snapshot, if any.
    pub fn open(snapshots: SnapshotStore) -> io::Result<Self> {
        let mut applied = Applied::default();
        let started = std::time::Instant::now();
        if let Some((meta, data)) = snapshots.load()? {
            let loaded = started.elapsed();
            applied.state = crate::codec::decode(&data)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
            tracing::info!(
                index = applied.last_applied.map(|id| id.index),
                bytes = data.len(),
                load_ms = loaded.as_millis() as u64,
                decode_ms = (started.elapsed() - loaded).as_millis() as u64,
                "state restored from snapshot"
            );
        }
        let last_event = applied.state.events().last_id();
        Ok(StateMachineStore {
            applied: Arc::new(RwLock::new(applied)),
            snapshots,
            last_event: Arc::new(tokio::sync::watch::Sender::new(last_event)),
        })
    }

    /// The handle the API reads through.
    pub fn applied(&self) -> SharedApplied {
        self.applied.clone()
    }

    /// The last event id applied, updated after every batch of applied entries.
    pub fn last_event(&self) -> tokio::sync::watch::Receiver<u64> {
        self.last_event.subscribe()
    }

    /// Wakes the event watchers if `last` is new.
    fn events_applied(&self, last: u64) {
        self.last_event.send_if_modified(|seen| {
            let new = *seen != last;
            *seen = last;
            new
        });
    }
}

/// Reads the applied state; a poisoned lock means an apply panicked, which is fatal by
/// design, so propagating the panic is right.
pub fn read(applied: &SharedApplied) -> std::sync::RwLockReadGuard<'_, Applied> {
    applied
        .read()
        .expect("state lock poisoned by a panicked apply")
}

fn write(applied: &SharedApplied) -> std::sync::RwLockWriteGuard<'_, Applied> {
    applied
        .write()
        .expect("state lock poisoned by a panicked apply")
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = read(&self.applied);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut last_event = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut applied = write(&self.applied);
                applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Ok(Outcome::RaftInternal),
                    EntryPayload::Normal(command) => {
                        applied.state.apply(entry.log_id.index, &command)
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Ok(Outcome::RaftInternal)
                    }
                };
                last_event = Some(applied.state.events().last_id());
                response
            };
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        if let Some(last) = last_event {
            self.events_applied(last);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            applied: self.applied.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_bytes().await?;
        let state: State = crate::codec::decode(&data)?;
        let bytes = data.len();
        // Stored unless an equal or newer snapshot already is; the state follows the
        // leader's snapshot either way.
        self.snapshots.save(meta, data).await?;
        let last_event = state.events().last_id();
        {
            let mut applied = write(&self.applied);
            applied.state = state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.events_applied(last_event);
        tracing::info!(
            index = meta.last_log_id.map(|id| id.index),
            bytes,
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .snapshots
            .current()?
            .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Builds a snapshot of the applied state and stores it durably.
pub struct SnapshotBuilder {
    applied: SharedApplied,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        // Encoding under the read lock keeps the snapshot consistent with its log id;
        // applies wait for it, reads do not. It goes straight into sled-sized chunks, so
        // the whole snapshot never sits in one buffer beside them, and the lock is
        // released before they are written and synced.
        let staged = self
            .snapshots
            .stage(|w| {
                let applied = read(&self.applied);
                codec::encode_into(&applied.state, w)?;
                Ok(SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership.clone(),
                })
            })
            .await?;
        let (meta, bytes, generation) =
            (staged.meta().clone(), staged.bytes(), staged.generation());
        if !self.snapshots.save_staged(staged).await? {
            tracing::info!(
                index = meta.last_log_id.map(|id| id.index),
                "snapshot built but not stored: a newer one was installed meanwhile"
            );
        }
        tracing::info!(
            index = meta.last_log_id.map(|id| id.index),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        // The data stays on disk until the snapshot is sent: holding it would keep a
        // second copy of the whole state in memory for nothing.
        Ok(Snapshot {
            meta,
            snapshot: self.snapshots.stored(generation),
        })
    }
}
