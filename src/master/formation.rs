//! How masters started with the same `--peers` list form one group, exactly once.
//!
//! Only a master whose data dir is pristine (no vote, no log) runs this. It asks every
//! other listed master what it knows ([`probe`]) and decides:
//!
//! - some peer knows a formed group in which this master is a voter **recorded as having
//!   stored log entries** (see [`crate::leader::record_joined_masters`]): refuse to start.
//!   This master's data was wiped; it may have voted in a term it no longer remembers,
//!   and voting again could elect two leaders in one term. The operator restores the
//!   data dir, or removes the master from the membership and adds it back as a learner.
//! - some peer knows a formed group in which this master is not such a voter: start Raft
//!   and let the leader bring it up to date (a voter of a group formed while it was still
//!   starting, a joiner waiting to be added, or a learner whose data was lost, which is
//!   harmless since learners do not vote);
//! - every listed peer answered and none knows a group: the master with the lowest id
//!   initializes the group with all listed voters; the others start Raft and wait.
//!
//! Waiting for *every* peer is deliberate: with a peer silent, a formed group could be
//! hiding behind it, and initializing then would split the brain. A restart of a master
//! with data skips all this, so a formed group is never re-initialized.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::network::{PeerNetwork, probe};

/// What a pristine master does once its peers have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formation {
    /// Initialize the group with the listed voters.
    Initialize,
    /// Start Raft and wait for the leader to reach this master.
    Wait,
}

/// Why a master refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum FormationError {
    #[error(
        "the data dir is empty, but master {peer} knows a formed group in which master {me} is a voter \
         (voters {voters:?}); its Raft state was lost. Restore the data dir, or remove master {me} from \
         the membership and add it back as a learner"
    )]
    WipedVoter {
        me: u64,
        peer: u64,
        voters: Vec<u64>,
    },
    #[error("stopped while waiting for peers")]
    Stopped,
}

/// How long one probe may take.
const PROBE_DEADLINE: Duration = Duration::from_millis(500);
/// Pause between probe rounds while some peers have not answered.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How often the wait for silent peers is logged.
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Probes the listed peers until the decision can be made safely.
pub async fn decide(
    config: &Config,
    network: &PeerNetwork,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<Formation, FormationError> {
    let me = config.id;
    let others: Vec<(u64, &String)> = config
        .peers
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, a)| (*id, a))
        .collect();
    let mut answered = BTreeSet::new();
    let mut last_log = Instant::now();
    tokio::pin!(stopped);
    loop {
        // Ask every peer in each round and weigh all the answers: one lagging peer may not
        // have applied the record that this master joined, another may have.
        let mut formed_by = None;
        for (peer, addr) in &others {
            let Ok(reply) = probe(network, addr, PROBE_DEADLINE).await else {
                continue;
            };
            if reply.initialized {
                if reply.voters.contains(&me) && reply.joined.contains(&me) {
                    return Err(FormationError::WipedVoter {
                        me,
                        peer: *peer,
                        voters: reply.voters,
                    });
                }
                formed_by = Some(*peer);
            }
            answered.insert(*peer);
        }
        if let Some(peer) = formed_by {
            tracing::info!(peer, "a formed group exists; joining it");
            return Ok(Formation::Wait);
        }
        if answered.len() == others.len() {
            let initializer = config.peers.keys().next() == Some(&me);
            return Ok(if initializer {
                Formation::Initialize
            } else {
                Formation::Wait
            });
        }
        if last_log.elapsed() >= WAIT_LOG_INTERVAL {
            let silent: Vec<u64> = others
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !answered.contains(id))
                .collect();
            tracing::info!(
                ?silent,
                "waiting for every listed peer to answer before forming the group"
            );
            last_log = Instant::now();
        }
        tokio::select! {
            _ = &mut stopped => return Err(FormationError::Stopped),
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}
