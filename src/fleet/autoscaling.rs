//! Autoscaling advice, with OpenVidu Pro's knobs: keep between `min_nodes` and
//! `max_nodes` media nodes RUNNING, and their average CPU load between `min_load` and
//! `max_load`.
//!
//! The rules, first match wins:
//! 1. fewer than `min_nodes` running or launching: launch the difference;
//! 2. more than `max_nodes` running: drain the surplus;
//! 3. average load above `max_load`: launch enough nodes to bring it under `max_load`
//!    (counting nodes already launching), within `max_nodes`;
//! 4. average load below `min_load` (and nothing launching): drain just enough of the
//!    least busy nodes to bring the average of the rest back to `min_load`, never past
//!    `max_load`, keeping `min_nodes`;
//! 5. otherwise nothing.
//!
//! Nodes to drain are the least busy: fewest sessions, then lowest load, then id.

use serde::{Deserialize, Serialize};

/// The autoscaling knobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Fewest media nodes to keep running.
    pub min_nodes: u32,
    /// Most media nodes to run.
    pub max_nodes: u32,
    /// Average CPU load (0–100) under which nodes are drained.
    pub min_load: f64,
    /// Average CPU load (0–100) over which nodes are launched.
    pub max_load: f64,
}

/// One RUNNING node as the advice sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    pub id: String,
    /// CPU load, 0–100.
    pub load: f64,
    /// Sessions it serves.
    pub sessions: usize,
}

/// What to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advice {
    /// Nodes to launch.
    pub launch: u32,
    /// Nodes to drain, least busy first.
    pub drain: Vec<String>,
}

/// The advice for `running` nodes with `launching` more on their way.
pub fn advise(policy: &Policy, running: &[NodeLoad], launching: u32) -> Advice {
    let n = running.len() as u32;
    let average = if running.is_empty() {
        0.0
    } else {
        running.iter().map(|node| node.load).sum::<f64>() / f64::from(n)
    };
    let total = average * f64::from(n);
    let coming = n + launching;
    if coming < policy.min_nodes {
        return Advice {
            launch: policy.min_nodes - coming,
            drain: Vec::new(),
        };
    }
    if n > policy.max_nodes {
        return drain(running, n - policy.max_nodes);
    }
    if average > policy.max_load && coming < policy.max_nodes {
        // The fewest nodes that carry the current total under max_load.
        let needed = (total / policy.max_load).ceil() as u32;
        let launch = needed.saturating_sub(coming);
        return Advice {
            launch: launch.min(policy.max_nodes - coming),
            drain: Vec::new(),
        };
    }
    if average < policy.min_load && n > policy.min_nodes && launching == 0 {
        // Keep enough nodes that the rest carry the total at or under max_load, and
        // no fewer than min_nodes; the rest may go.
        let keep = ((total / policy.max_load).ceil() as u32)
            .max((total / policy.min_load).floor() as u32)
            .max(policy.min_nodes)
            .max(1);
        if keep < n {
            return drain(running, n - keep);
        }
    }
    Advice::default()
}

/// Drains the `count` least busy nodes.
fn drain(running: &[NodeLoad], count: u32) -> Advice {
    let mut order: Vec<&NodeLoad> = running.iter().collect();
    order.sort_by(|a, b| {
        a.sessions
            .cmp(&b.sessions)
            .then(a.load.total_cmp(&b.load))
            .then_with(|| a.id.cmp(&b.id))
    });
    Advice {
        launch: 0,
        drain: order
            .into_iter()
            .take(count as usize)
            .map(|node| node.id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        min_nodes: 1,
        max_nodes: 4,
        min_load: 30.0,
        max_load: 70.0,
    };

    fn nodes(loads: &[(f64, usize)]) -> Vec<NodeLoad> {
        loads
            .iter()
            .enumerate()
            .map(|(i, (load, sessions))| NodeLoad {
                id: format!("n{i}"),
                load: *load,
                sessions: *sessions,
            })
            .collect()
    }

    #[test]
    fn below_the_minimum_launches_the_difference() {
        assert_eq!(advise(&POLICY, &[], 0).launch, 1);
        let two = Policy {
            min_nodes: 3,
            ..POLICY
        };
        assert_eq!(advise(&two, &nodes(&[(50.0, 1)]), 1).launch, 1);
    }

    #[test]
    fn overload_launches_enough_to_get_under_max_load_within_max_nodes() {
        // 2 nodes at 90: total 180 needs 3 nodes under 70.
        assert_eq!(
            advise(&POLICY, &nodes(&[(90.0, 5), (90.0, 5)]), 0).launch,
            1
        );
        // 3 nodes at 100: total 300 needs 5, but at most 4 may run.
        let advice = advise(&POLICY, &nodes(&[(100.0, 1), (100.0, 1), (100.0, 1)]), 0);
        assert_eq!(advice.launch, 1);
        // Nodes already launching count.
        assert_eq!(
            advise(&POLICY, &nodes(&[(90.0, 5), (90.0, 5)]), 1).launch,
            0
        );
        // At max_nodes nothing more is launched.
        let full = nodes(&[(95.0, 1), (95.0, 1), (95.0, 1), (95.0, 1)]);
        assert_eq!(advise(&POLICY, &full, 0), Advice::default());
    }

    #[test]
    fn underload_drains_the_least_busy_but_keeps_the_rest_under_max_load() {
        // 4 nodes at 10: total 40; 1 node would carry 40 (under 70, over 30).
        let advice = advise(
            &POLICY,
            &nodes(&[(10.0, 3), (10.0, 1), (10.0, 2), (10.0, 0)]),
            0,
        );
        assert_eq!(advice.drain, vec!["n3", "n1", "n2"]);
        // 3 nodes at 25: total 75 needs 2 nodes to stay under 70.
        let advice = advise(&POLICY, &nodes(&[(25.0, 1), (25.0, 2), (25.0, 3)]), 0);
        assert_eq!(advice.drain, vec!["n0"]);
        // Never under min_nodes.
        assert_eq!(advise(&POLICY, &nodes(&[(5.0, 0)]), 0), Advice::default());
    }

    #[test]
    fn within_bounds_nothing_changes_and_surplus_nodes_drain() {
        assert_eq!(
            advise(&POLICY, &nodes(&[(50.0, 1), (40.0, 1)]), 0),
            Advice::default()
        );
        let tight = Policy {
            max_nodes: 1,
            ..POLICY
        };
        assert_eq!(
            advise(&tight, &nodes(&[(50.0, 2), (50.0, 1)]), 0).drain,
            vec!["n1"]
        );
    }
}
