//! The leader's soft view of the media nodes: when each last sent a heartbeat, the load
//! it reported, and how many sessions the leader placed on it since; and the autoscaling
//! advice drawn from it ([`advise`]). None of it is
//! logged (it changes with every heartbeat); only the decisions drawn from it are.
//!
//! - **Liveness.** A RUNNING node not heard from for the node timeout is declared
//!   CRASHED. Clocks start when this master first looks at the node in its term, so a
//!   failover never crashes a node whose heartbeats went to the old leader.
//! - **Placement.** A new session goes to the RUNNING node with the lowest estimated
//!   load: its last reported CPU load plus [`LOAD_PER_PLACED_SESSION`] for each session
//!   placed on it since that report, so that a burst of sessions arriving between two
//!   reports spreads over the nodes instead of piling onto the one that looked idle.
//!   Ties go to the node serving the fewest sessions, then to the smallest id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

mod autoscaling;

pub use autoscaling::{Advice, NodeLoad, Policy, advise};

use crate::state::{MediaNodeStatus, Session, State};

/// Load points (of 0–100) a session placed on a node is assumed to add until the node's
/// next report shows the real figure.
pub const LOAD_PER_PLACED_SESSION: f64 = 1.0;

/// What the leader knows of one node beyond the replicated registry.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    /// The last heartbeat, or when this leader started watching the node.
    last_seen: Instant,
    /// CPU load (0–100) of the last heartbeat; 0 until one arrives.
    load: f64,
    /// Sessions placed on it since that heartbeat.
    placed_since: u32,
    /// Whether it has reported to this leader at all.
    reported: bool,
}

impl Liveness {
    fn fresh(now: Instant) -> Self {
        Liveness {
            last_seen: now,
            load: 0.0,
            placed_since: 0,
            reported: false,
        }
    }

    fn estimated_load(&self) -> f64 {
        self.load + f64::from(self.placed_since) * LOAD_PER_PLACED_SESSION
    }
}

/// The leader's soft state of the media nodes; cheap to clone, shared by the API's
/// heartbeat path, placement and the liveness task.
///
/// Everything is read and written through [`Fleet::at`] with the caller's Raft term:
/// the first use in a newer term forgets what an earlier leadership learned, so a
/// master that leads again never judges nodes by heartbeats it stopped receiving, and
/// no heartbeat of the new term is lost to a late reset.
#[derive(Clone, Default)]
pub struct Fleet {
    nodes: Arc<Mutex<Nodes>>,
}

#[derive(Default)]
struct Nodes {
    /// The term these observations belong to.
    term: u64,
    by_id: HashMap<String, Liveness>,
}

/// The fleet as seen in one term (a lock: keep it short, never across an await).
pub struct View<'a>(MutexGuard<'a, Nodes>);

impl Fleet {
    /// The fleet in `term`, the term in which the caller leads.
    pub fn at(&self, term: u64) -> View<'_> {
        let mut nodes = self.nodes.lock().expect("fleet poisoned");
        if term > nodes.term {
            nodes.term = term;
            nodes.by_id.clear();
        }
        View(nodes)
    }
}

impl View<'_> {
    fn entry(&mut self, id: &str, now: Instant) -> &mut Liveness {
        self.0
            .by_id
            .entry(id.to_owned())
            .or_insert_with(|| Liveness::fresh(now))
    }

    /// Records a heartbeat from `id` with its CPU `load` (0–100).
    pub fn heartbeat(&mut self, id: &str, load: f64, now: Instant) {
        let node = self.entry(id, now);
        node.last_seen = now;
        node.load = load;
        node.placed_since = 0;
        node.reported = true;
    }

    /// The load `id` last reported in this term, if it did.
    pub fn load(&self, id: &str) -> Option<f64> {
        self.0.by_id.get(id).filter(|n| n.reported).map(|n| n.load)
    }

    /// The RUNNING nodes of `state` not heard from within `timeout` of `now`. A node
    /// seen for the first time in this term starts its clock now.
    pub fn silent(&mut self, state: &State, now: Instant, timeout: Duration) -> Vec<String> {
        state
            .media_nodes()
            .filter(|node| node.status == MediaNodeStatus::Running)
            .filter(|node| now.duration_since(self.entry(&node.id, now).last_seen) >= timeout)
            .map(|node| node.id.clone())
            .collect()
    }

    /// Chooses the RUNNING node of `state` for one new session (see the module doc) and
    /// counts the session against it.
    pub fn place(&mut self, state: &State, session: &Session, now: Instant) -> Option<String> {
        let chosen = state
            .media_nodes()
            .filter(|node| node.status == MediaNodeStatus::Running)
            .filter(|node| node.ensure_records_if(session.recording_mode).is_ok())
            .map(|node| {
                let estimate = self.entry(&node.id, now).estimated_load();
                (estimate, state.hosted_on(&node.id), &node.id)
            })
            .min_by(|a, b| {
                a.0.total_cmp(&b.0)
                    .then(a.1.cmp(&b.1))
                    .then_with(|| a.2.cmp(b.2))
            })
            .map(|(_, _, id)| id.clone())?;
        self.entry(&chosen, now).placed_since += 1;
        Some(chosen)
    }

    /// The load each RUNNING node of `state` reported, with the sessions it serves; or
    /// `None` until every one of them has reported in this term (a new leader does not
    /// know the loads, and must not mistake them for zero).
    pub fn loads(&self, state: &State) -> Option<Vec<NodeLoad>> {
        state
            .media_nodes()
            .filter(|node| node.status == MediaNodeStatus::Running)
            .map(|node| {
                let load = self.load(&node.id)?;
                Some(NodeLoad {
                    id: node.id.clone(),
                    load,
                    sessions: state.hosted_on(&node.id),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::testing::{Harness, create_connection, create_session};

    fn three_running_nodes() -> Harness {
        let mut h = Harness::new();
        for id in ["a", "b", "c"] {
            h.running_node(id);
        }
        h
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_is_silent_only_a_full_timeout_after_this_leader_first_saw_it() {
        let h = three_running_nodes();
        let fleet = Fleet::default();
        let timeout = Duration::from_secs(5);
        let start = Instant::now();
        assert!(fleet.at(1).silent(&h.state, start, timeout).is_empty());
        tokio::time::advance(Duration::from_secs(3)).await;
        fleet.at(1).heartbeat("a", 10.0, Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            fleet.at(1).silent(&h.state, Instant::now(), timeout),
            ["b", "c"]
        );
        // Leading again in a later term: every clock starts again.
        assert!(
            fleet
                .at(2)
                .silent(&h.state, Instant::now(), timeout)
                .is_empty()
        );
        // A straggler of the earlier term does not wipe the new one.
        fleet.at(1).heartbeat("a", 99.0, Instant::now());
        assert_eq!(fleet.at(2).load("a"), Some(99.0));
        tokio::time::advance(timeout).await;
        assert_eq!(
            fleet.at(2).silent(&h.state, Instant::now(), timeout),
            ["a", "b", "c"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn placement_spreads_a_burst_and_prefers_the_least_loaded() {
        let mut h = three_running_nodes();
        h.ok(create_session("new"));
        let new = h.state.session("new").unwrap().clone();
        let fleet = Fleet::default();
        let now = Instant::now();
        for (id, load) in [("a", 10.0), ("b", 10.0), ("c", 40.0)] {
            fleet.at(1).heartbeat(id, load, now);
        }
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..66 {
            let node = fleet.at(1).place(&h.state, &new, now).unwrap();
            *counts.entry(node).or_default() += 1;
        }
        // a and b take 30 each until their estimate reaches c's 40, then all share.
        let count = |id: &str| counts.get(id).copied().unwrap_or(0);
        let (a, b, c) = (count("a"), count("b"), count("c"));
        assert!(a.abs_diff(b) <= 1 && a > c && c > 0, "{counts:?}");
        // A report resets the estimate to the real load.
        fleet.at(1).heartbeat("c", 0.0, now);
        assert_eq!(fleet.at(1).place(&h.state, &new, now).as_deref(), Some("c"));

        // Ties go to the node with fewer sessions, then the smaller id.
        let fresh = Fleet::default();
        h.ok(create_session("s1"));
        h.ok(create_connection("s1", 1, Some("a")));
        assert_eq!(h.state.hosted_on("a"), 1);
        assert_eq!(fresh.at(1).place(&h.state, &new, now).as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn loads_wait_until_every_running_node_reported() {
        let h = three_running_nodes();
        let fleet = Fleet::default();
        fleet.at(1).heartbeat("a", 50.0, Instant::now());
        fleet.at(1).heartbeat("b", 20.0, Instant::now());
        assert!(fleet.at(1).loads(&h.state).is_none());
        fleet.at(1).heartbeat("c", 80.0, Instant::now());
        let loads = fleet.at(1).loads(&h.state).unwrap();
        let by_id: Vec<(&str, f64)> = loads.iter().map(|n| (n.id.as_str(), n.load)).collect();
        assert_eq!(by_id, [("a", 50.0), ("b", 20.0), ("c", 80.0)]);
    }
}
