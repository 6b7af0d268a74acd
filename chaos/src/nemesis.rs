//! The nemesis: a fault schedule drawn from the seed before the run, then applied to
//! the live cluster. The same seed gives the same schedule (kinds, times, durations
//! and the random picks among candidate masters); which master is leader when a fault
//! fires depends on the run.

use std::time::Duration;

use chorus::api::pb;
use chorus::client::Timeouts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::Cluster;
use chorus_testkit::Fault;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    KillLeader,
    KillFollower,
    KillMajority,
    PauseLeader,
    IsolateLeader,
    IsolateFollower,
    Split,
    OneWay,
    Delay,
    TransferLeader,
    Membership,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::KillLeader,
        Kind::KillFollower,
        Kind::KillMajority,
        Kind::PauseLeader,
        Kind::IsolateLeader,
        Kind::IsolateFollower,
        Kind::Split,
        Kind::OneWay,
        Kind::Delay,
        Kind::TransferLeader,
        Kind::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "kill-leader",
            Kind::KillFollower => "kill-follower",
            Kind::KillMajority => "kill-majority",
            Kind::PauseLeader => "pause-leader",
            Kind::IsolateLeader => "isolate-leader",
            Kind::IsolateFollower => "isolate-follower",
            Kind::Split => "split",
            Kind::OneWay => "one-way",
            Kind::Delay => "delay",
            Kind::TransferLeader => "transfer-leader",
            Kind::Membership => "membership",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One scheduled fault.
#[derive(Debug, Clone)]
pub struct Event {
    /// When it starts, from the start of the run.
    pub at: Duration,
    pub kind: Kind,
    /// How long it lasts before healing.
    pub hold: Duration,
    /// Random picks among candidates.
    pub pick: u64,
}

/// The schedule for `seed`: faults from `kinds` one after another, each held 1.5–3 s
/// and followed by 1–2 s of calm, from 2 s in until the quiet phase (the last fifth of
/// the run, at least 5 s).
pub fn schedule(seed: u64, kinds: &[Kind], duration: Duration) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let quiet = (duration / 5).max(Duration::from_secs(5));
    let end = duration.saturating_sub(quiet);
    let mut at = Duration::from_secs(2);
    let mut events = Vec::new();
    if kinds.is_empty() {
        return events;
    }
    loop {
        let hold = Duration::from_millis(rng.random_range(1_500..=3_000));
        if at + hold > end {
            return events;
        }
        events.push(Event {
            at,
            kind: kinds[rng.random_range(0..kinds.len())],
            hold,
            pick: rng.random(),
        });
        at += hold + Duration::from_millis(rng.random_range(1_000..=2_000));
    }
}

/// What applying a fault did, to undo it and to report it.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub description: String,
    killed: Vec<u64>,
    paused: Vec<u64>,
    network: bool,
    membership: bool,
    /// The fault took the leader away (for the unavailability figures).
    pub leader_fault: Option<&'static str>,
}

fn pick_one(candidates: &[u64], pick: u64) -> Option<u64> {
    (!candidates.is_empty()).then(|| candidates[(pick % candidates.len() as u64) as usize])
}

/// Cuts every link between the groups `a` and `b`, both ways.
fn partition(cluster: &Cluster, a: &[u64], b: &[u64]) {
    let cut = Fault {
        cut: true,
        ..Fault::default()
    };
    for &x in a {
        for &y in b {
            cluster.network.set(x, y, cut);
            cluster.network.set(y, x, cut);
        }
    }
}

/// Applies `event` to the cluster.
pub async fn apply(cluster: &mut Cluster, event: &Event) -> Applied {
    let ids = cluster.ids();
    let leader = cluster.leader().await;
    let followers: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| Some(*id) != leader)
        .collect();
    let mut applied = Applied::default();
    let majority = ids.len() / 2 + 1;
    match event.kind {
        Kind::KillLeader | Kind::PauseLeader | Kind::IsolateLeader | Kind::TransferLeader
            if leader.is_none() =>
        {
            applied.description = format!("{} skipped: no leader", event.kind.name());
        }
        Kind::KillLeader => {
            let l = leader.unwrap();
            cluster.kill(l);
            applied.killed.push(l);
            applied.leader_fault = Some("kill-leader");
            applied.description = format!("SIGKILL leader {l}");
        }
        Kind::KillFollower => {
            if let Some(f) = pick_one(&followers, event.pick) {
                cluster.kill(f);
                applied.killed.push(f);
                applied.description = format!("SIGKILL follower {f}");
            }
        }
        Kind::KillMajority => {
            let mut victims = ids.clone();
            let offset = (event.pick % ids.len() as u64) as usize;
            victims.rotate_left(offset);
            victims.truncate(majority);
            for &v in &victims {
                cluster.kill(v);
            }
            applied.description = format!("SIGKILL majority {victims:?}");
            applied.killed = victims;
        }
        Kind::PauseLeader => {
            let l = leader.unwrap();
            cluster.pause(l);
            applied.paused.push(l);
            applied.leader_fault = Some("pause-leader");
            applied.description = format!("SIGSTOP leader {l}");
        }
        Kind::IsolateLeader => {
            let l = leader.unwrap();
            partition(cluster, &[l], &followers);
            applied.network = true;
            applied.leader_fault = Some("isolate-leader");
            applied.description = format!("isolate leader {l}");
        }
        Kind::IsolateFollower => {
            if let Some(f) = pick_one(&followers, event.pick) {
                let others: Vec<u64> = ids.iter().copied().filter(|id| *id != f).collect();
                partition(cluster, &[f], &others);
                applied.network = true;
                applied.description = format!("isolate follower {f}");
            }
        }
        Kind::Split => {
            let mut order = ids.clone();
            order.rotate_left((event.pick % ids.len() as u64) as usize);
            let (big, small) = order.split_at(majority);
            partition(cluster, big, small);
            applied.network = true;
            applied.description = format!("split {big:?} | {small:?}");
        }
        Kind::OneWay => {
            // The leader's messages to one follower are lost; the follower's reach it.
            if let (Some(l), Some(f)) = (leader, pick_one(&followers, event.pick)) {
                cluster.network.set(
                    l,
                    f,
                    Fault {
                        cut: true,
                        ..Fault::default()
                    },
                );
                applied.network = true;
                applied.description = format!("cut {l} → {f} one way");
            }
        }
        Kind::Delay => {
            let delay = Fault {
                cut: false,
                delay_ms: 20 + event.pick % 60,
                jitter_ms: 40,
            };
            for &x in &ids {
                for &y in &ids {
                    if x != y {
                        cluster.network.set(x, y, delay);
                    }
                }
            }
            applied.network = true;
            applied.description = format!("delay every link {} ms ± 40", delay.delay_ms);
        }
        Kind::TransferLeader => {
            if let Some(to) = pick_one(&followers, event.pick) {
                let client = cluster.client(Timeouts::default());
                let result = client
                    .transfer_leadership(pb::TransferLeadershipRequest { to })
                    .await;
                applied.description = format!(
                    "transfer leadership to {to}: {}",
                    result.map_or_else(|e| e.message().to_owned(), |_| "done".into())
                );
            }
        }
        Kind::Membership => {
            if ids.len() >= 5 {
                let voters: Vec<u64> = ids.iter().take(3).copied().collect();
                let client = cluster.client(Timeouts::default());
                let result = client
                    .change_membership(pb::ChangeMembershipRequest {
                        voters: voters.clone(),
                        retain: true,
                    })
                    .await;
                applied.membership = true;
                applied.description = format!(
                    "voters {} → {voters:?}: {}",
                    ids.len(),
                    result.map_or_else(|e| e.message().to_owned(), |_| "done".into())
                );
            } else {
                applied.description = "membership change needs 5 masters: skipped".into();
            }
        }
    }
    applied
}

/// Undoes what `applied` did.
pub async fn heal(cluster: &mut Cluster, applied: &Applied) {
    if applied.network {
        cluster.network.heal();
    }
    for &id in &applied.paused {
        cluster.resume(id);
    }
    for &id in &applied.killed {
        cluster.restart(id);
    }
    if applied.membership {
        restore_membership(cluster).await;
    }
}

/// Makes every master a voter again.
pub async fn restore_membership(cluster: &Cluster) {
    let voters = cluster.ids();
    let client = cluster.client(Timeouts::default());
    if let Err(e) = client
        .change_membership(pb::ChangeMembershipRequest {
            voters,
            retain: false,
        })
        .await
    {
        // The runner has no tracing subscriber: say it where the run report goes.
        eprintln!("chaos: membership not restored: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule_and_leaves_a_quiet_end() {
        let d = Duration::from_secs(60);
        let a = schedule(7, &Kind::ALL, d);
        let b = schedule(7, &Kind::ALL, d);
        let show = |s: &[Event]| {
            s.iter()
                .map(|e| (e.at, e.kind, e.hold, e.pick))
                .collect::<Vec<_>>()
        };
        assert_eq!(show(&a), show(&b));
        assert_ne!(show(&a), show(&schedule(8, &Kind::ALL, d)));
        assert!(!a.is_empty());
        for e in &a {
            assert!(e.at + e.hold <= Duration::from_secs(48), "{e:?}");
        }
    }
}
