//! Test harness shared by the unit tests of every module: a state fed commands at
//! increasing indexes and times, with assertions that a refused command changed
//! nothing and that the invariants hold after every command.

use super::*;

/// A state plus the index and time of the last command fed to it.
pub struct Harness {
    /// The state under test.
    pub state: State,
    /// Log index of the last command.
    pub index: u64,
    /// `at` of the last command.
    pub at: Millis,
}

impl Harness {
    /// An empty state; times start at a realistic epoch.
    pub fn new() -> Self {
        Harness {
            state: State::default(),
            index: 0,
            at: 1_700_000_000_000,
        }
    }

    /// Applies `op` one second after the previous command.
    pub fn run(&mut self, request_id: Option<&str>, op: Op) -> Response {
        self.at += 1_000;
        self.run_at(request_id, self.at, op)
    }

    /// Applies `op` stamped `at` (which may lie in the past) at the next index.
    pub fn run_at(&mut self, request_id: Option<&str>, at: Millis, op: Op) -> Response {
        self.index += 1;
        let command = Command {
            request_id: request_id.map(str::to_owned),
            at,
            op,
        };
        let response = self.state.apply(self.index, &command);
        self.state.assert_invariants();
        response
    }

    /// Applies `op`, which must succeed.
    #[track_caller]
    pub fn ok(&mut self, op: Op) -> Outcome {
        let shown = format!("{op:?}");
        match self.run(None, op) {
            Ok(outcome) => outcome,
            Err(error) => panic!("{shown} failed: {error}"),
        }
    }

    /// Applies `op`, which must fail and change nothing at all.
    #[track_caller]
    pub fn err(&mut self, op: Op) -> Error {
        let before = self.state.clone();
        let shown = format!("{op:?}");
        let Err(error) = self.run(None, op) else {
            panic!("{shown} should have failed")
        };
        assert_eq!(
            self.state.digest(),
            before.digest(),
            "failed {shown} changed the digest"
        );
        assert_eq!(self.state, before, "failed {shown} changed the state");
        error
    }

    /// Applies `op` under `request_id`; it must fail and change nothing but the
    /// request-id memory and the clock that stamps it.
    #[track_caller]
    pub fn err_remembered(&mut self, request_id: &str, op: Op) -> Error {
        let before = self.state.clone();
        let shown = format!("{op:?}");
        let Err(error) = self.run(Some(request_id), op) else {
            panic!("{shown} should have failed")
        };
        let mut rest = self.state.clone();
        assert_eq!(
            rest.requests.get(request_id, rest.clock),
            Some(&Err(error.clone())),
            "failure not remembered"
        );
        rest.requests = before.requests.clone();
        rest.clock = before.clock;
        assert_eq!(
            rest.digest(),
            before.digest(),
            "failed {shown} changed more than the request log"
        );
        error
    }

    /// Registers node `id` and brings it to RUNNING.
    pub fn running_node(&mut self, id: &str) {
        self.ok(register(id));
        self.ok(seen(id));
    }

    /// Registers node `id` and brings it to `status` by allowed steps. A node brought
    /// to WAITING_IDLE_TO_TERMINATE hosts the session `<id>-keeper`, or it would move
    /// on to TERMINATING at once.
    pub fn node_in(&mut self, id: &str, status: MediaNodeStatus) {
        use MediaNodeStatus::*;
        self.ok(register(id));
        match status {
            Launching => {}
            Failed | Canceled => {
                self.ok(set_status(id, status));
            }
            Running | WaitingIdleToTerminate | Terminating | Terminated | Crashed => {
                self.ok(seen(id));
                match status {
                    WaitingIdleToTerminate => {
                        self.ok(create_session_on(&format!("{id}-keeper"), id));
                        self.ok(set_status(id, WaitingIdleToTerminate));
                    }
                    Terminating => {
                        self.ok(set_status(id, Terminating));
                    }
                    Terminated => {
                        self.ok(set_status(id, Terminating));
                        self.ok(set_status(id, Terminated));
                    }
                    Crashed => {
                        self.ok(crash(id, [0; 32]));
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(self.node_status(id), status);
    }

    /// The status of a node that must exist.
    pub fn node_status(&self, id: &str) -> MediaNodeStatus {
        self.state
            .media_node(id)
            .unwrap_or_else(|| panic!("no media node '{id}'"))
            .status
    }
}

/// Generous limits that tests tighten where they test a limit.
pub fn limits() -> Limits {
    Limits {
        max_sessions: 100,
        max_connections_per_session: 10,
        max_data_bytes: 1_000,
    }
}

/// A default session request.
pub fn new_session(id: &str) -> NewSession {
    NewSession {
        session_id: id.to_owned(),
        media_mode: MediaMode::Routed,
        recording_mode: RecordingMode::Manual,
        forced_video_codec: VideoCodec::Vp8,
        allow_transcoding: false,
        media_node_id: None,
        options: None,
        recording_defaults: None,
        limits: limits(),
    }
}

/// Creates session `id`, unplaced.
pub fn create_session(id: &str) -> Op {
    Op::CreateSession(new_session(id))
}

/// Creates session `id` forced onto `node`.
pub fn create_session_on(id: &str, node: &str) -> Op {
    let mut new = new_session(id);
    new.media_node_id = Some(node.to_owned());
    Op::CreateSession(new)
}

/// The token of test connection `n`.
pub fn token(n: u32) -> String {
    format!("tok_{n:0>20}")
}

/// A request for connection `con_<n>` with token `token(n)`.
pub fn new_connection(session_id: &str, n: u32) -> NewConnection {
    NewConnection {
        session_id: session_id.to_owned(),
        connection_id: format!("con_{n}"),
        token: token(n),
        connection_type: ConnectionType::WebRtc,
        role: Role::default(),
        server_data: "server-data".to_owned(),
        record: true,
        options: None,
        place_on: None,
        limits: limits(),
    }
}

/// Creates connection `con_<n>`, suggesting `place_on` for an unplaced session.
pub fn create_connection(session_id: &str, n: u32, place_on: Option<&str>) -> Op {
    let mut new = new_connection(session_id, n);
    new.place_on = place_on.map(str::to_owned);
    Op::CreateConnection(new)
}

/// Joins with `token` from a fixed address.
pub fn join(token: &str) -> Op {
    Op::JoinConnection {
        token: token.to_owned(),
        ip: "198.51.100.1".to_owned(),
        client_data: None,
        limits: limits(),
    }
}

/// Deletes connection `con_<n>` of `session_id`.
pub fn delete_connection(session_id: &str, n: u32) -> Op {
    Op::DeleteConnection {
        session_id: session_id.to_owned(),
        connection_id: format!("con_{n}"),
    }
}

/// Deletes a session.
pub fn delete_session(id: &str) -> Op {
    Op::DeleteSession {
        session_id: id.to_owned(),
    }
}

/// Places a session.
pub fn place(session_id: &str, node: &str) -> Op {
    Op::PlaceSession {
        session_id: session_id.to_owned(),
        media_node_id: node.to_owned(),
    }
}

/// Registers node `id` at a uri derived from it.
pub fn register(id: &str) -> Op {
    Op::RegisterMediaNode {
        id: id.to_owned(),
        uri: format!("wss://{id}.example:4443"),
        environment_id: format!("i-{id}"),
        cores: 4,
        can_record: true,
    }
}

/// A heartbeat from node `id`.
pub fn seen(id: &str) -> Op {
    Op::MediaNodeSeen { id: id.to_owned() }
}

/// Asks node `id` to move to `status`.
pub fn set_status(id: &str, status: MediaNodeStatus) -> Op {
    Op::SetMediaNodeStatus {
        id: id.to_owned(),
        status,
    }
}

/// Declares node `id` crashed.
pub fn crash(id: &str, token_seed: [u8; 32]) -> Op {
    Op::MediaNodeCrashed {
        id: id.to_owned(),
        token_seed,
    }
}

/// Deregisters node `id`.
pub fn deregister(id: &str, force: bool) -> Op {
    Op::DeregisterMediaNode {
        id: id.to_owned(),
        force,
        token_seed: [9; 32],
    }
}
