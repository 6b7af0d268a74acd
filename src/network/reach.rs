//! Whether a peer can be reached, and when to try it again after it could not.
//!
//! openraft's heartbeat worker sends a heartbeat whenever one is asked for, and a
//! connection refused fails in microseconds: with one follower down, a leader retried it
//! about once a millisecond, burning a core and writing ~17,700 WARN lines a second.
//! Every call to a peer that could not be reached (no connection) therefore first waits
//! out a back-off that doubles from [`FIRST_RETRY`] to [`LAST_RETRY`], with jitter, and
//! the outage is logged as a summary every [`REPORT_EVERY`] rather than per attempt.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The back-off after the first failure.
const FIRST_RETRY: Duration = Duration::from_millis(20);
/// The longest back-off: also the longest a peer that comes back waits to be reached.
const LAST_RETRY: Duration = Duration::from_secs(1);
/// How often an ongoing outage is logged.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// One peer's reachability, shared by every connection to it.
#[derive(Debug, Default)]
pub struct Reach {
    state: Mutex<Outage>,
}

/// The current outage, if any.
#[derive(Debug, Default)]
struct Outage {
    /// Failed attempts since the peer last answered.
    failures: u64,
    /// When the first of them failed.
    since: Option<Instant>,
    /// No attempt before this.
    retry_at: Option<Instant>,
    /// When the outage was last logged.
    reported_at: Option<Instant>,
}

/// The waiting a [`Reach`] asks of a caller with a deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Try at once.
    Go,
    /// Wait this long, then try.
    Then(Duration),
    /// The back-off outlasts the deadline: wait it out and fail without trying.
    GiveUp(Duration),
}

impl Reach {
    /// What a caller whose call may take `ttl` should do now.
    pub fn wait(&self, ttl: Duration) -> Wait {
        let state = self.state.lock().expect("reach poisoned");
        match state
            .retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
        {
            None => Wait::Go,
            Some(left) if left.is_zero() => Wait::Go,
            Some(left) if left <= ttl => Wait::Then(left),
            Some(_) => Wait::GiveUp(ttl),
        }
    }

    /// Waits as [`Reach::wait`] says, and returns what is left of `ttl` for the call;
    /// `None` if it should fail without trying.
    pub async fn ready(&self, ttl: Duration) -> Option<Duration> {
        match self.wait(ttl) {
            Wait::Go => Some(ttl),
            Wait::Then(left) => {
                tokio::time::sleep(left).await;
                Some(ttl - left)
            }
            Wait::GiveUp(ttl) => {
                tokio::time::sleep(ttl).await;
                None
            }
        }
    }

    /// An attempt could not reach the peer at `addr` (`error` says why).
    pub fn failed(&self, addr: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("reach poisoned");
        state.failures += 1;
        let since = *state.since.get_or_insert(now);
        let doublings = (state.failures - 1).min(16) as u32;
        let backoff = FIRST_RETRY.saturating_mul(1 << doublings).min(LAST_RETRY);
        // Jitter: between half and all of it, so peers retrying together spread out.
        let backoff = backoff.mul_f64(rand::random_range(0.5..=1.0));
        state.retry_at = Some(now + backoff);
        let report = state
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY);
        if report {
            state.reported_at = Some(now);
            let failures = state.failures;
            drop(state);
            tracing::warn!(
                peer = addr,
                failures,
                for_ms = now.duration_since(since).as_millis() as u64,
                "peer unreachable, retrying with back-off: {error}"
            );
        }
    }

    /// An attempt reached the peer at `addr`: the outage, if any, is over.
    pub fn answered(&self, addr: &str) {
        let mut state = self.state.lock().expect("reach poisoned");
        if let Some(since) = state.since {
            let failures = state.failures;
            *state = Outage::default();
            drop(state);
            tracing::info!(
                peer = addr,
                failures,
                after_ms = since.elapsed().as_millis() as u64,
                "peer reachable again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_doubling_with_jitter_up_to_the_cap_and_an_answer_resets() {
        let reach = Reach::default();
        let ttl = Duration::from_millis(50);
        assert_eq!(
            reach.wait(ttl),
            Wait::Go,
            "a peer never tried is tried at once"
        );
        let mut previous_cap = Duration::ZERO;
        for failure in 1..=10u32 {
            reach.failed("peer", &"refused");
            let cap = FIRST_RETRY
                .saturating_mul(1 << (failure - 1))
                .min(LAST_RETRY);
            let left = match reach.wait(Duration::from_secs(5)) {
                Wait::Then(left) => left,
                other => panic!("failure {failure}: {other:?}"),
            };
            assert!(
                left <= cap && left >= cap / 2,
                "failure {failure}: {left:?} of {cap:?}"
            );
            assert!(cap >= previous_cap);
            previous_cap = cap;
        }
        assert_eq!(previous_cap, LAST_RETRY);
        // A caller with a shorter deadline waits it out and does not try.
        let started = Instant::now();
        assert_eq!(reach.ready(ttl).await, None);
        assert_eq!(started.elapsed(), ttl);
        // Once the back-off has passed, the next caller goes.
        tokio::time::sleep(LAST_RETRY).await;
        assert_eq!(reach.wait(ttl), Wait::Go);
        reach.failed("peer", &"refused");
        reach.answered("peer");
        assert_eq!(reach.wait(ttl), Wait::Go, "an answer ends the outage");
        reach.failed("peer", &"refused");
        match reach.wait(Duration::from_secs(5)) {
            Wait::Then(left) => assert!(left <= FIRST_RETRY, "{left:?}: the back-off starts over"),
            other => panic!("{other:?}"),
        }
    }
}
