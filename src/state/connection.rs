//! Connections: one participant's seat in a session, and the single-use token that
//! claims it.
//!
//! The application creates a connection (PENDING) and hands its token to a client;
//! the client joins with the token, which turns the connection ACTIVE exactly once.
//! The state keeps a token index (`token → (session, connection)`) so a join needs no
//! scan. A used token stays in the index, so a second use is told "already used"
//! rather than "not found".
//!
//! When the last ACTIVE connection of a session is deleted, the session is destroyed
//! with it (OpenVidu's `lastParticipantLeft`). Deleting a PENDING connection never
//! destroys anything: nobody was in the room.

use serde::{Deserialize, Serialize};

use super::{
    Error, Limits, MediaNodeStatus, Millis, NewConnection, Outcome, Response, State, Tick,
    token_hint, validate_connection_id, validate_media_node_id, validate_session_id,
    validate_token,
};

/// Longest `options` of a session or a connection, in bytes.
pub const MAX_OPTIONS_BYTES: usize = 8 << 10;

/// Longest `ip` a join may record, in bytes (an IPv6 address with zone fits easily).
pub const MAX_IP_LEN: usize = 64;

/// What kind of participant a connection is (OpenVidu's `type`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum ConnectionType {
    /// A browser or mobile client.
    #[default]
    WebRtc,
    /// An IP camera whose stream the media node pulls.
    IpCam,
}
wire_names!(ConnectionType, field = "connection_type", { WebRtc => "WEBRTC", IpCam => "IPCAM" });

/// What a participant may do (OpenVidu's `role`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Role {
    /// May only receive streams.
    Subscriber,
    /// May send and receive streams.
    #[default]
    Publisher,
    /// May also force others out of the session.
    Moderator,
}
wire_names!(Role, field = "role", {
    Subscriber => "SUBSCRIBER",
    Publisher => "PUBLISHER",
    Moderator => "MODERATOR",
});

/// Whether the participant has joined.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum ConnectionStatus {
    /// Created; its token has not been used (or was reissued after its node failed).
    #[default]
    Pending,
    /// Its token was used; the participant is in the session.
    Active,
}
wire_names!(ConnectionStatus, field = "status", { Pending => "PENDING", Active => "ACTIVE" });

/// One participant's seat in a session.
///
/// Invariants (checked by `State::assert_invariants`):
/// - `active_at` is set exactly when `status` is ACTIVE;
/// - `token` is unique across the cluster and indexed to this connection;
/// - the session that holds it is placed if it is ACTIVE.
///
/// It does not repeat its session's id: the session holds it (a million connections
/// would carry a million copies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// `con_…`, unique within its session.
    pub id: String,
    /// WEBRTC or IPCAM.
    pub connection_type: ConnectionType,
    /// What the participant may do.
    pub role: Role,
    /// PENDING until the token is used, then ACTIVE.
    pub status: ConnectionStatus,
    /// `tok_…`: the single-use secret that claims the connection. A secret: never log it.
    pub token: String,
    /// Data the application attached at creation.
    pub server_data: String,
    /// Data the participant attached when joining.
    pub client_data: String,
    /// The participant's address as seen at the last join; empty before any join.
    pub ip: String,
    /// Log time of creation.
    pub created_at: Millis,
    /// Log time of the join; `None` while PENDING.
    pub active_at: Option<Millis>,
    /// Whether the participant's streams go into the session's recordings (OpenVidu's
    /// `record`, true unless the application says otherwise).
    pub record: bool,
    /// Settings Chorus keeps for the application but does not act on (see
    /// [`check_options`]); `None` when there are none.
    pub options: Option<Box<str>>,
}

/// Where a token leads: the value side of the state's token index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenOwner {
    /// The session holding the connection.
    pub session_id: String,
    /// The connection the token claims.
    pub connection_id: String,
}

impl State {
    /// `Op::CreateConnection`: checks everything, then inserts a PENDING connection,
    /// placing the session on `place_on` if it is unplaced and that node is RUNNING.
    pub(super) fn create_connection(&mut self, tick: Tick, new: &NewConnection) -> Response {
        validate_session_id(&new.session_id)?;
        validate_connection_id(&new.connection_id)?;
        validate_token(&new.token)?;
        if let Some(node_id) = &new.place_on {
            validate_media_node_id(node_id)?;
        }
        check_data_size("server_data", &new.server_data, new.limits)?;
        check_options("options", new.options.as_deref())?;
        self.license.ensure_admits_new_work()?;
        let session = self
            .sessions
            .get(&new.session_id)
            .ok_or_else(|| Error::not_found("session", &new.session_id))?;
        let max = new.limits.max_connections_per_session;
        if session.connections.len() >= max as usize {
            return Err(Error::ResourceExhausted(format!(
                "session '{}' already holds {} connections, the limit max_connections_per_session = {max}",
                session.id,
                session.connections.len()
            )));
        }
        if session.connections.contains_key(&new.connection_id) {
            return Err(Error::already_exists("connection", &new.connection_id));
        }
        if self.tokens.contains_key(&new.token) {
            return Err(Error::already_exists("token", token_hint(&new.token)));
        }
        // A node that is absent or not RUNNING is not an error: the leader's choice may
        // be stale by the time the command applies, and the session simply waits.
        let placement = match (&session.media_node_id, &new.place_on) {
            (None, Some(node_id))
                if self.media_nodes.get(node_id).is_some_and(|n| {
                    n.status == MediaNodeStatus::Running
                        && n.ensure_records_if(session.recording_mode).is_ok()
                }) =>
            {
                Some(node_id.clone())
            }
            _ => None,
        };

        let connection = Connection {
            id: new.connection_id.clone(),
            connection_type: new.connection_type,
            role: new.role,
            status: ConnectionStatus::Pending,
            token: new.token.clone(),
            server_data: new.server_data.clone(),
            client_data: String::new(),
            ip: String::new(),
            created_at: tick.now,
            active_at: None,
            record: new.record,
            options: new.options.clone(),
        };
        let owner = TokenOwner {
            session_id: new.session_id.clone(),
            connection_id: new.connection_id.clone(),
        };
        self.tokens.insert(new.token.clone(), owner);
        if placement.is_some() {
            self.set_placement(&new.session_id, placement);
        }
        let session = self.session_mut(&new.session_id);
        session
            .connections
            .insert(connection.id.clone(), connection.clone());
        Ok(Outcome::Connection {
            session_id: new.session_id.clone(),
            connection,
            media_node_id: session.media_node_id.clone(),
        })
    }

    /// `Op::JoinConnection`: turns the token's PENDING connection ACTIVE.
    ///
    /// A join into an unplaced session is refused (FAILED_PRECONDITION): there is no
    /// media node to connect to yet, and an ACTIVE connection without a node would be
    /// missed when nodes fail. The token stays unused, so the client can retry.
    pub(super) fn join_connection(
        &mut self,
        tick: Tick,
        token: &str,
        ip: &str,
        client_data: Option<&str>,
        limits: Limits,
    ) -> Response {
        check_join(token, ip, client_data, limits)?;
        let owner = self
            .tokens
            .get(token)
            .ok_or_else(|| Error::not_found("token", token_hint(token)))?
            .clone();
        let session = self.session_mut(&owner.session_id);
        let media_node_id = session.media_node_id.clone();
        let connection = session
            .connections
            .get_mut(&owner.connection_id)
            .unwrap_or_else(|| {
                panic!(
                    "bug: token index points at missing connection '{}'",
                    owner.connection_id
                )
            });
        if connection.status == ConnectionStatus::Active {
            let since = connection
                .active_at
                .map(|at| format!(" since {at}"))
                .unwrap_or_default();
            return Err(Error::FailedPrecondition(format!(
                "token {} already used: connection '{}' of session '{}' is ACTIVE{since}",
                token_hint(token),
                owner.connection_id,
                owner.session_id
            )));
        }
        if media_node_id.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "session '{}' is waiting for a media node; join again once it is placed",
                owner.session_id
            )));
        }

        connection.status = ConnectionStatus::Active;
        connection.active_at = Some(tick.now);
        connection.ip = ip.to_owned();
        if let Some(data) = client_data {
            connection.client_data = data.to_owned();
        }
        let connection = connection.clone();
        self.record_if_always(tick, &owner.session_id);
        Ok(Outcome::Connection {
            session_id: owner.session_id,
            connection,
            media_node_id,
        })
    }

    /// `Op::UpdateConnection`: changes what the participant may do and whether it is
    /// recorded, PENDING or ACTIVE alike; a field left `None` keeps its value.
    pub(super) fn update_connection(
        &mut self,
        session_id: &str,
        connection_id: &str,
        role: Option<Role>,
        record: Option<bool>,
    ) -> Response {
        validate_session_id(session_id)?;
        validate_connection_id(connection_id)?;
        let session = self
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| Error::not_found("session", session_id))?;
        let media_node_id = session.media_node_id.clone();
        let connection = session.connections.get_mut(connection_id).ok_or_else(|| {
            Error::not_found("connection", format!("{session_id}/{connection_id}"))
        })?;
        if let Some(role) = role {
            connection.role = role;
        }
        if let Some(record) = record {
            connection.record = record;
        }
        Ok(Outcome::Connection {
            session_id: session_id.to_owned(),
            connection: connection.clone(),
            media_node_id,
        })
    }

    /// `Op::DeleteConnection`: removes the connection and its token; destroys the
    /// session if this was its last ACTIVE connection.
    pub(super) fn delete_connection(
        &mut self,
        tick: Tick,
        session_id: &str,
        connection_id: &str,
    ) -> Response {
        validate_session_id(session_id)?;
        validate_connection_id(connection_id)?;
        let session = self
            .sessions
            .get(session_id)
            .ok_or_else(|| Error::not_found("session", session_id))?;
        if !session.connections.contains_key(connection_id) {
            return Err(Error::not_found(
                "connection",
                format!("{session_id}/{connection_id}"),
            ));
        }

        let session = self.session_mut(session_id);
        let removed = session
            .connections
            .remove(connection_id)
            .unwrap_or_else(|| panic!("bug: connection '{connection_id}' vanished during apply"));
        let last_participant_left = removed.status == ConnectionStatus::Active
            && session.active_connections().next().is_none();
        self.tokens.remove(&removed.token);
        if last_participant_left {
            self.destroy_session(tick, session_id, super::RecordingEnd::LastParticipantLeft);
        } else if removed.status == ConnectionStatus::Active {
            self.stop_session_recording(tick, session_id, super::RecordingEnd::AutomaticStop);
        }
        Ok(Outcome::ConnectionDeleted {
            session_id: session_id.to_owned(),
            connection_id: connection_id.to_owned(),
            session_destroyed: last_participant_left,
        })
    }
}

/// The checks of `Op::JoinConnection` that need no state: the token's shape, the
/// address's length, the data's size.
pub(super) fn check_join(
    token: &str,
    ip: &str,
    client_data: Option<&str>,
    limits: Limits,
) -> Result<(), Error> {
    validate_token(token)?;
    if ip.len() > MAX_IP_LEN {
        return Err(Error::invalid_argument(
            "ip",
            format!("must be at most {MAX_IP_LEN} bytes, got {}", ip.len()),
        ));
    }
    if let Some(data) = client_data {
        check_data_size("client_data", data, limits)?;
    }
    Ok(())
}

/// Refuses `options` that are not a JSON object of at most [`MAX_OPTIONS_BYTES`]:
/// settings of OpenVidu's API (`kurentoOptions`, `customIceServers`, `rtspUri`,
/// `defaultRecordingProperties`…) that Chorus stores and shows again but does not act
/// on. Their own shapes are the front end's to check; the state only bounds them and
/// keeps them parseable.
pub(super) fn check_options(field: &str, options: Option<&str>) -> Result<(), Error> {
    let Some(options) = options else {
        return Ok(());
    };
    if options.len() > MAX_OPTIONS_BYTES {
        return Err(Error::ResourceExhausted(format!(
            "{field} is {} bytes, over the limit of {MAX_OPTIONS_BYTES}",
            options.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(options) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(Error::invalid_argument(field, "must be a JSON object")),
    }
}

/// Refuses `data` longer than `limits.max_data_bytes`, naming the field and the limit.
///
/// RESOURCE_EXHAUSTED rather than INVALID_ARGUMENT: the data is well formed, it only
/// exceeds a configured limit, and the API contract files limits under that code.
pub(super) fn check_data_size(field: &str, data: &str, limits: Limits) -> Result<(), Error> {
    let max = limits.max_data_bytes;
    if data.len() > max as usize {
        return Err(Error::ResourceExhausted(format!(
            "{field} is {} bytes, over the limit max_data_bytes = {max}",
            data.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::*;

    fn connection_of(outcome: Outcome) -> (Connection, Option<String>) {
        match outcome {
            Outcome::Connection {
                connection,
                media_node_id,
                ..
            } => (connection, media_node_id),
            other => panic!("not a connection: {other:?}"),
        }
    }

    #[test]
    fn a_new_connection_is_pending_and_its_token_is_indexed() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let outcome = h.ok(create_connection("room", 1, None));
        assert!(
            matches!(&outcome, Outcome::Connection { session_id, .. } if session_id == "room"),
            "{outcome:?}"
        );
        let (connection, node) = connection_of(outcome);
        assert_eq!(connection.id, "con_1");
        assert_eq!(connection.status, ConnectionStatus::Pending);
        assert_eq!(
            connection.role,
            Role::Publisher,
            "PUBLISHER is the default role"
        );
        assert_eq!(connection.connection_type, ConnectionType::WebRtc);
        assert_eq!(connection.token, token(1));
        assert_eq!(connection.server_data, "server-data");
        assert_eq!(connection.created_at, h.at);
        assert_eq!(connection.active_at, None);
        assert_eq!(node, None);
        assert_eq!(h.state.connection("room", "con_1"), Some(&connection));
        assert_eq!(h.state.connection_by_token(&token(1)), Some(&connection));
    }

    #[test]
    fn joining_activates_exactly_once() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        let joined = Op::JoinConnection {
            token: token(1),
            ip: "203.0.113.7".into(),
            client_data: Some("alice".into()),
            limits: limits(),
        };
        let (connection, node) = connection_of(h.ok(joined.clone()));
        assert_eq!(connection.status, ConnectionStatus::Active);
        assert_eq!(connection.active_at, Some(h.at));
        assert_eq!(connection.ip, "203.0.113.7");
        assert_eq!(connection.client_data, "alice");
        assert_eq!(node.as_deref(), Some("n1"));

        let error = h.err(joined);
        let Error::FailedPrecondition(message) = error else {
            panic!("{error:?}")
        };
        assert!(message.contains("already used"), "{message}");
        assert!(
            !message.contains(&token(1)),
            "the message must not echo the whole token: {message}"
        );
    }

    fn update(session: &str, connection: &str, role: Option<Role>, record: Option<bool>) -> Op {
        Op::UpdateConnection {
            session_id: session.into(),
            connection_id: connection.into(),
            role,
            record,
        }
    }

    #[test]
    fn an_update_changes_role_and_record_pending_or_active_and_keeps_the_rest() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        let (created, _) = connection_of(h.ok(create_connection("room", 1, Some("n1"))));
        assert!(
            created.record,
            "recorded unless the application says otherwise"
        );

        let (pending, node) =
            connection_of(h.ok(update("room", "con_1", Some(Role::Moderator), None)));
        assert_eq!((pending.role, pending.record), (Role::Moderator, true));
        assert_eq!(node.as_deref(), Some("n1"));
        h.ok(join(&token(1)));
        let (active, _) = connection_of(h.ok(update("room", "con_1", None, Some(false))));
        assert_eq!((active.role, active.record), (Role::Moderator, false));
        assert_eq!(active.status, ConnectionStatus::Active);
        assert_eq!(active.token, created.token);
        assert_eq!(h.state.connection("room", "con_1"), Some(&active));
    }

    #[test]
    fn an_update_of_nothing_that_exists_is_refused() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        assert_eq!(
            h.err(update("nope", "con_1", Some(Role::Subscriber), None)),
            Error::not_found("session", "nope")
        );
        assert_eq!(
            h.err(update("room", "con_9", Some(Role::Subscriber), None)),
            Error::not_found("connection", "room/con_9")
        );
        assert!(matches!(
            h.err(update("room", "bad id", None, None)),
            Error::InvalidArgument { ref field, .. } if field == "connection_id"
        ));
    }

    #[test]
    fn options_are_a_bounded_json_object_kept_with_the_connection() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let mut new = new_connection("room", 1);
        new.options = Some(r#"{"kurentoOptions":{"allowedFilters":["x"]}}"#.into());
        let (connection, _) = connection_of(h.ok(Op::CreateConnection(new.clone())));
        assert_eq!(connection.options, new.options);

        for (options, refused) in [
            ("[1]", "a JSON object"),
            ("{not json", "a JSON object"),
            (
                &*format!(r#"{{"k":"{}"}}"#, "x".repeat(MAX_OPTIONS_BYTES)),
                "over the limit",
            ),
        ] {
            let mut new = new_connection("room", 2);
            new.options = Some(options.into());
            let op = Op::CreateConnection(new);
            let error = op.check().unwrap_err();
            assert!(error.to_string().contains(refused), "{error}");
            assert_eq!(h.err(op), error, "applying refuses what the check refuses");
        }
        assert!(h.state.connection("room", "con_2").is_none());
    }

    #[test]
    fn an_unknown_token_is_not_found_without_echoing_it() {
        let mut h = Harness::new();
        let secret = "tok_UnknownSecret0123456789";
        let error = h.err(join(secret));
        assert_eq!(error, Error::not_found("token", "tok_Unkn…"));
        assert!(!error.to_string().contains(secret));
        assert!(
            matches!(h.err(join("tok_short")), Error::InvalidArgument { ref field, .. } if field == "token")
        );
    }

    #[test]
    fn an_overlong_ip_or_client_data_is_refused() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        let long_ip = Op::JoinConnection {
            token: token(1),
            ip: "1".repeat(MAX_IP_LEN + 1),
            client_data: None,
            limits: limits(),
        };
        assert!(
            matches!(h.err(long_ip), Error::InvalidArgument { ref field, .. } if field == "ip")
        );

        let max = limits().max_data_bytes as usize;
        let big = Op::JoinConnection {
            token: token(1),
            ip: String::new(),
            client_data: Some("x".repeat(max + 1)),
            limits: limits(),
        };
        let error = h.err(big);
        assert!(
            matches!(&error, Error::ResourceExhausted(m) if m.starts_with("client_data")),
            "{error:?}"
        );
        let exact = Op::JoinConnection {
            token: token(1),
            ip: String::new(),
            client_data: Some("x".repeat(max)),
            limits: limits(),
        };
        h.ok(exact);
    }

    #[test]
    fn duplicate_ids_and_tokens_are_refused() {
        let mut h = Harness::new();
        h.ok(create_session("a"));
        h.ok(create_session("b"));
        h.ok(create_connection("a", 1, None));

        let mut same_id = new_connection("a", 2);
        same_id.connection_id = "con_1".into();
        assert_eq!(
            h.err(Op::CreateConnection(same_id)),
            Error::already_exists("connection", "con_1")
        );

        let mut same_token = new_connection("b", 3);
        same_token.token = token(1);
        let error = h.err(Op::CreateConnection(same_token));
        assert!(
            matches!(&error, Error::AlreadyExists { kind, id } if kind == "token" && !id.contains(&token(1)))
        );

        // The same connection id in another session is a different connection.
        let mut other_session = new_connection("b", 4);
        other_session.connection_id = "con_1".into();
        h.ok(Op::CreateConnection(other_session));
    }

    #[test]
    fn malformed_connection_fields_are_refused() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        type Spoil = fn(&mut NewConnection);
        let cases: [(&str, Spoil); 4] = [
            ("connection_id", |c| c.connection_id = "conn-1".into()),
            ("token", |c| c.token = "tok_!!!!!!!!!!!!!!!!!!!!".into()),
            ("session_id", |c| c.session_id = "a b".into()),
            ("media_node_id", |c| c.place_on = Some(String::new())),
        ];
        for (field, spoil) in cases {
            let mut new = new_connection("room", 1);
            spoil(&mut new);
            let error = h.err(Op::CreateConnection(new));
            assert!(
                matches!(&error, Error::InvalidArgument { field: f, .. } if f == field),
                "{field}: {error:?}"
            );
        }
    }

    #[test]
    fn unknown_session_or_connection_is_not_found() {
        let mut h = Harness::new();
        assert_eq!(
            h.err(create_connection("nobody", 1, None)),
            Error::not_found("session", "nobody")
        );
        h.ok(create_session("room"));
        assert_eq!(
            h.err(delete_connection("nobody", 1)),
            Error::not_found("session", "nobody")
        );
        assert_eq!(
            h.err(delete_connection("room", 9)),
            Error::not_found("connection", "room/con_9")
        );
    }

    #[test]
    fn connection_and_data_limits_are_enforced_exactly() {
        let mut h = Harness::new();
        h.ok(create_session("room"));
        let mut tight = limits();
        tight.max_connections_per_session = 2;
        for n in 1..=2 {
            let mut new = new_connection("room", n);
            new.limits = tight;
            h.ok(Op::CreateConnection(new));
        }
        let mut third = new_connection("room", 3);
        third.limits = tight;
        let error = h.err(Op::CreateConnection(third));
        assert!(
            matches!(&error, Error::ResourceExhausted(m) if m.contains("max_connections_per_session = 2")),
            "{error:?}"
        );

        let max = limits().max_data_bytes as usize;
        let mut big = new_connection("room", 4);
        big.server_data = "x".repeat(max + 1);
        let error = h.err(Op::CreateConnection(big));
        assert!(
            matches!(&error, Error::ResourceExhausted(m) if m.starts_with("server_data")),
            "{error:?}"
        );
        let mut exact = new_connection("room", 4);
        exact.server_data = "x".repeat(max);
        h.ok(Op::CreateConnection(exact));
    }

    #[test]
    fn the_last_active_participant_leaving_destroys_the_session() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        for n in 1..=3 {
            h.ok(create_connection("room", n, Some("n1")));
        }
        h.ok(join(&token(1)));
        h.ok(join(&token(2)));

        let outcome = h.ok(delete_connection("room", 3));
        assert_eq!(
            outcome,
            Outcome::ConnectionDeleted {
                session_id: "room".into(),
                connection_id: "con_3".into(),
                session_destroyed: false
            },
            "a pending connection leaving destroys nothing"
        );
        let outcome = h.ok(delete_connection("room", 1));
        assert!(
            matches!(
                outcome,
                Outcome::ConnectionDeleted {
                    session_destroyed: false,
                    ..
                }
            ),
            "con_2 is still active"
        );
        assert!(h.state.connection_by_token(&token(1)).is_none());

        let outcome = h.ok(delete_connection("room", 2));
        assert!(matches!(
            outcome,
            Outcome::ConnectionDeleted {
                session_destroyed: true,
                ..
            }
        ));
        assert!(h.state.session("room").is_none());
    }

    #[test]
    fn the_session_goes_with_its_pending_connections_when_the_last_participant_leaves() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(create_connection("room", 2, None));
        h.ok(join(&token(1)));
        h.ok(delete_connection("room", 1));
        assert!(h.state.session("room").is_none());
        assert_eq!(
            h.err(join(&token(2))),
            Error::not_found("token", token_hint(&token(2)))
        );
    }

    #[test]
    fn the_last_participant_leaving_a_draining_node_terminates_it() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.ok(create_session("room"));
        h.ok(create_connection("room", 1, Some("n1")));
        h.ok(join(&token(1)));
        h.ok(set_status("n1", MediaNodeStatus::WaitingIdleToTerminate));
        assert_eq!(h.node_status("n1"), MediaNodeStatus::WaitingIdleToTerminate);
        h.ok(delete_connection("room", 1));
        assert_eq!(h.node_status("n1"), MediaNodeStatus::Terminating);
    }

    #[test]
    fn the_first_connection_places_the_session_on_a_running_node() {
        let mut h = Harness::new();
        h.running_node("n1");
        h.running_node("n2");
        h.ok(create_session("room"));
        let (_, node) = connection_of(h.ok(create_connection("room", 1, Some("n1"))));
        assert_eq!(node.as_deref(), Some("n1"));
        // Once placed, the session keeps its node whatever the leader suggests.
        let (_, node) = connection_of(h.ok(create_connection("room", 2, Some("n2"))));
        assert_eq!(node.as_deref(), Some("n1"));
        assert_eq!(
            h.state.session("room").unwrap().media_node_id.as_deref(),
            Some("n1")
        );
    }

    #[test]
    fn a_node_that_cannot_take_the_session_leaves_it_unplaced() {
        let mut h = Harness::new();
        h.ok(register("launching"));
        h.running_node("busy");
        h.ok(create_session_on("keeper", "busy"));
        h.ok(set_status("busy", MediaNodeStatus::WaitingIdleToTerminate));
        h.ok(create_session("room"));
        for (n, place_on) in [
            (1, Some("launching")),
            (2, Some("busy")),
            (3, Some("ghost")),
            (4, None),
        ] {
            let (connection, node) = connection_of(h.ok(create_connection("room", n, place_on)));
            assert_eq!(node, None, "{place_on:?}");
            assert_eq!(connection.status, ConnectionStatus::Pending);
        }
        let room = h.state.session("room").unwrap();
        assert!(!room.is_placed());
        assert!(room.awaits_placement());
        assert_eq!(
            h.state
                .sessions_awaiting_placement()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["room"]
        );

        let error = h.err(join(&token(1)));
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("waiting for a media node")),
            "{error:?}"
        );
    }
}
