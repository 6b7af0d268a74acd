//! The leader's autoscaling advice, as last decided.
//!
//! The leader computes the advice from the media nodes' loads (soft state it alone
//! holds) and logs it only when it changes, so that every master shows the same advice
//! and a new leader starts from the last one. Chorus never launches or stops machines
//! itself: an operator or an orchestrator reads the advice and acts.

use serde::{Deserialize, Serialize};

use super::{Error, Millis, Outcome, Response, State, validate_media_node_id};

/// What the cluster's media capacity should do, according to the leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoscalingAdvice {
    /// Media nodes to launch.
    pub launch: u32,
    /// RUNNING nodes to drain (set WAITING_IDLE_TO_TERMINATE), least busy first.
    pub drain: Vec<String>,
    /// RUNNING nodes when the advice was made.
    pub running: u32,
    /// Their average CPU load then, in whole percent.
    pub average_load: u32,
    /// Log time of the decision; stamped when applied.
    pub decided_at: Millis,
}

impl State {
    /// `Op::AutoscalingAdvised`: records the leader's new advice.
    pub(super) fn autoscaling_advised(
        &mut self,
        now: Millis,
        advice: &AutoscalingAdvice,
    ) -> Response {
        for id in &advice.drain {
            validate_media_node_id(id)?;
        }
        if advice.average_load > 100 {
            return Err(Error::invalid_argument(
                "average_load",
                "is a percentage, at most 100",
            ));
        }
        let advice = AutoscalingAdvice {
            decided_at: now,
            ..advice.clone()
        };
        self.autoscaling = Some(advice.clone());
        Ok(Outcome::AutoscalingAdvised(advice))
    }

    /// The leader's last autoscaling advice, if autoscaling ever advised.
    pub fn autoscaling(&self) -> Option<&AutoscalingAdvice> {
        self.autoscaling.as_ref()
    }
}
