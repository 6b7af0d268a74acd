//! The pure domain state machine of Chorus: sessions, connections, the media-node
//! registry and the license trust counters.
//!
//! # The design in one paragraph
//!
//! Every master holds a `State` and applies the same committed `Command`s, in log
//! order, with `State::apply(index, command) -> Response`. Applying is a pure function:
//! no I/O, no clock, no randomness. Whatever is not deterministic (the time, connection
//! ids, tokens, token seeds, the media node a session goes to, the configured limits)
//! is decided by the leader *before* proposing and travels inside the command. Hence
//! every master reaches the same state and the same response, and `State::digest`
//! (SHA-256 of the canonical postcard encoding) proves it.
//!
//! # Rules every op follows
//!
//! - **Validate, then mutate.** An op checks everything that can fail before its first
//!   change, so a refused command leaves the state exactly as it was. Bad input never
//!   panics; a panic means a broken invariant, i.e. a bug.
//! - **Log time.** The state keeps `clock = max(clock, at)` over the commands that
//!   changed it, so time never runs backwards when a leader with a slower clock takes
//!   over. It stamps `created_at`, `active_at`, license times and request-id ages.
//! - **Exactly once.** A command carrying a `request_id` seen in the last
//!   `REQUEST_ID_TTL` of log time returns the first response, success or error, and
//!   applies nothing (see `request_log`).
//! - **Limits travel in the op** (`Limits`, `TrustPolicy`), so a master configured
//!   differently still applies the same way.
//!
//! # Module map
//!
//! - `command`: `Command`, `Op`, `Outcome`, `Response`, `Limits`;
//! - `session`, `connection`, `media_node`, `license`: each domain type with the
//!   rules of the ops that change it;
//! - `recording`: recordings, their lifecycle on the media node and their rules;
//! - `request_log`: the bounded request-id memory;
//! - `event`: the events applying emits (OpenVidu's webhook events), their retention
//!   and the webhook's delivered mark;
//! - `machine`: `State`, `apply`, the digest, read accessors and invariants;
//! - `id`: what valid ids and tokens look like, and token derivation;
//! - `error`: the one semantic `Error`;
//! - `wire_name`: the canonical names of the small enums.
//!
//! # Deliberately left out
//!
//! Media-node load (soft state in the leader's memory), the choice of a node (the
//! leader's placement policy), license signatures and the authority protocol (the
//! leader's license task), and every kind of I/O.

#[macro_use]
mod wire_name;

mod autoscaling;
mod command;
mod connection;
mod error;
mod event;
mod id;
mod license;
mod machine;
mod media_node;
mod recording;
mod request_log;
mod session;

#[cfg(test)]
pub(crate) mod testing;

pub use autoscaling::AutoscalingAdvice;
pub use command::{Command, Limits, Millis, NewConnection, NewSession, Op, Outcome, Response};
pub use connection::{
    Connection, ConnectionStatus, ConnectionType, MAX_IP_LEN, MAX_OPTIONS_BYTES, Role, TokenOwner,
};
pub use error::Error;
pub use event::{
    Compacted, Event, EventKind, EventLog, LeaveReason, MAX_RETAINED_EVENTS, SessionEnd,
};
pub use id::{
    CONNECTION_ID_PREFIX, DERIVED_TOKEN_SECRET_LEN, MAX_CONNECTION_ID_LEN, MAX_ID_LEN,
    MAX_REQUEST_ID_LEN, MAX_TOKEN_SECRET_LEN, MIN_TOKEN_SECRET_LEN, TOKEN_PREFIX, derive_token,
    token_hint, validate_connection_id, validate_media_node_id, validate_request_id,
    validate_session_id, validate_token,
};
pub use license::{CheckOutcome, License, LicenseStatus, MAX_REASON_LEN, TrustPolicy};
pub use machine::State;
use machine::Tick;
pub use media_node::{MAX_CORES, MAX_ENVIRONMENT_ID_LEN, MAX_URI_LEN, MediaNode, MediaNodeStatus};
pub use recording::{
    HookOutcome, MAX_CUSTOM_LAYOUT_LEN, MAX_RECORDING_ERROR_LEN, MAX_RECORDING_NAME_LEN,
    MAX_RECORDING_URL_LEN, MAX_RECORDINGS, OutputMode, Recording, RecordingAction, RecordingEnd,
    RecordingLayout, RecordingProperties, RecordingStatus, Refusal,
};
pub use request_log::{MAX_REMEMBERED_REQUESTS, REQUEST_ID_TTL, RequestLog};
pub use session::{DisplacementReason, MediaMode, RecordingMode, Session, VideoCodec};
