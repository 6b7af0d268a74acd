//! The leader-only task that tends the media nodes: it declares silent nodes CRASHED,
//! places every session waiting for a node, and, when autoscaling is on, logs new
//! autoscaling advice.
//!
//! Both are decisions logged as commands, so whatever this leader managed before dying
//! is replicated, and the next leader's task simply carries on: it finds the sessions
//! still waiting (their displacement was logged) and places them. The state machine
//! refuses a stale decision (placing a session already placed, crashing a node no longer
//! RUNNING), so no session is ever placed twice nor left on a crashed node.

use std::time::Duration;

use futures::StreamExt;
use rand::RngCore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fleet::{Fleet, Policy, advise};
use crate::raft::{Raft, SharedApplied, leading_term, propose, read};
use crate::state::{AutoscalingAdvice, MediaNodeStatus, Op, Outcome, RecordingMode};

/// How many placements are in flight at once: enough to re-place a crashed node's
/// sessions in a few round trips, few enough not to crowd out client writes.
const PLACEMENTS_IN_FLIGHT: usize = 16;

/// How often the task looks, given the node timeout: often enough that a crash is
/// declared within a fifth of the timeout of its deadline and a waiting session is
/// placed promptly, never more than every 20 ms.
fn period(node_timeout: Duration) -> Duration {
    (node_timeout / 5).clamp(Duration::from_millis(20), Duration::from_millis(200))
}

/// Runs until `stop`; acts only while this master leads.
pub async fn tend_media_nodes(
    raft: Raft,
    applied: SharedApplied,
    fleet: Fleet,
    node_timeout: Duration,
    autoscaling: Option<Policy>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(period(node_timeout));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(term) = leading_term(&raft) else {
            continue;
        };
        // The fleet is per term: a new leader knows nothing of the heartbeats the old
        // one received, and gives every node a full timeout from now.
        let work = async {
            crash_silent_nodes(&raft, &applied, &fleet, term, node_timeout).await;
            place_waiting_sessions(&raft, &applied, &fleet, term).await;
            if let Some(policy) = &autoscaling {
                advise_autoscaling(&raft, &applied, &fleet, term, policy).await;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = work => {}
        }
    }
}

/// Logs the autoscaling advice if it changed (what to launch or drain, not the mere
/// drift of the average load).
async fn advise_autoscaling(
    raft: &Raft,
    applied: &SharedApplied,
    fleet: &Fleet,
    term: u64,
    policy: &Policy,
) {
    let advice = {
        let applied = read(applied);
        let state = &applied.state;
        let Some(running) = fleet.at(term).loads(state) else {
            return;
        };
        let launching = state
            .media_nodes()
            .filter(|node| node.status == MediaNodeStatus::Launching)
            .count() as u32;
        let advice = advise(policy, &running, launching);
        let current = state.autoscaling();
        if current.is_some_and(|c| c.launch == advice.launch && c.drain == advice.drain) {
            return;
        }
        let average = if running.is_empty() {
            0.0
        } else {
            running.iter().map(|n| n.load).sum::<f64>() / running.len() as f64
        };
        AutoscalingAdvice {
            launch: advice.launch,
            drain: advice.drain,
            running: running.len() as u32,
            average_load: average.round().clamp(0.0, 100.0) as u32,
            decided_at: 0,
        }
    };
    tracing::info!(
        launch = advice.launch,
        drain = ?advice.drain,
        running = advice.running,
        average_load = advice.average_load,
        "autoscaling advice"
    );
    if let Err(e) = propose(raft, None, Op::AutoscalingAdvised(advice)).await {
        tracing::debug!("autoscaling advice not recorded: {e}");
    }
}

/// Declares CRASHED every RUNNING node not heard from within `node_timeout`.
async fn crash_silent_nodes(
    raft: &Raft,
    applied: &SharedApplied,
    fleet: &Fleet,
    term: u64,
    node_timeout: Duration,
) {
    let silent = fleet
        .at(term)
        .silent(&read(applied).state, Instant::now(), node_timeout);
    for id in silent {
        let mut token_seed = [0u8; 32];
        rand::rng().fill_bytes(&mut token_seed);
        let op = Op::MediaNodeCrashed {
            id: id.clone(),
            token_seed,
        };
        match propose(raft, None, op).await {
            Ok(Outcome::MediaNodeCrashed {
                displaced_sessions, ..
            }) => tracing::warn!(
                node = %id,
                timeout_ms = node_timeout.as_millis() as u64,
                displaced = displaced_sessions.len(),
                "media node crashed: no heartbeat within the node timeout; re-placing its sessions"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!(node = %id, "crash not recorded: {e}"),
        }
    }
}

/// Places every session waiting for a node on the node placement chooses.
async fn place_waiting_sessions(raft: &Raft, applied: &SharedApplied, fleet: &Fleet, term: u64) {
    let plan: Vec<(String, String)> = {
        let applied = read(applied);
        let state = &applied.state;
        let now = Instant::now();
        let mut fleet = fleet.at(term);
        // Stops at the first session no node can take: with no RUNNING node that is
        // the first waiting one, not a pass over all of them. An ALWAYS session that no
        // recording node can take is passed over, not in the way of the others.
        let mut plan = Vec::new();
        for session in state.sessions_awaiting_placement() {
            match fleet.place(state, session, now) {
                Some(node) => plan.push((session.id.clone(), node)),
                None if session.recording_mode == RecordingMode::Always => {}
                None => break,
            }
        }
        plan
    };
    if plan.is_empty() {
        return;
    }
    let planned = plan.len();
    let placed = futures::stream::iter(plan)
        .map(|(session_id, media_node_id)| {
            let op = Op::PlaceSession {
                session_id,
                media_node_id,
            };
            async move { propose(raft, None, op).await.is_ok() }
        })
        .buffer_unordered(PLACEMENTS_IN_FLIGHT)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    tracing::info!(placed, planned, "placed waiting sessions");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_follows_the_timeout_within_bounds() {
        assert_eq!(period(Duration::from_secs(5)), Duration::from_millis(200));
        assert_eq!(
            period(Duration::from_millis(500)),
            Duration::from_millis(100)
        );
        assert_eq!(period(Duration::from_millis(10)), Duration::from_millis(20));
    }
}
