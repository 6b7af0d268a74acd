//! Request deadlines, shared by both ports.
//!
//! A gRPC client states its deadline in the `grpc-timeout` header. tonic's server
//! cancels a handler when it expires, answering CANCELLED; Chorus instead stops a little
//! earlier on its own and answers UNAVAILABLE ("no leader within the deadline"), which
//! tells the client to retry. A call without a deadline gets [`DEFAULT_TIMEOUT`], so no
//! request waits forever for a leader that does not come.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The deadline of a call that states none: long enough to ride out an election and a
/// slow fsync, short enough that a stuck call is noticed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much earlier than the client's deadline Chorus gives up, so that its own answer
/// reaches the client before tonic cancels the call (at most this, at most a tenth).
const MARGIN: Duration = Duration::from_millis(50);

/// The instant by which a call that arrived now, carrying `metadata`, must be answered.
pub fn of(metadata: &MetadataMap) -> Instant {
    let timeout = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    Instant::now() + timeout.saturating_sub(MARGIN.min(timeout / 10))
}

/// The time left until `deadline`.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for bad in ["", "S", "12", "1x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_defaults_and_keeps_a_margin() {
        let now = Instant::now();
        assert_eq!(of(&MetadataMap::new()), now + DEFAULT_TIMEOUT - MARGIN);
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "100m".parse().unwrap());
        assert_eq!(of(&metadata), now + Duration::from_millis(90));
    }
}
