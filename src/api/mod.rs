//! The client port: the public gRPC API of every master.
//!
//! Protobuf types stay here; handlers translate requests into the service layer's
//! ([`crate::service`]) and its answers back, and every failure into a `tonic::Status`
//! through [`crate::error::Error`]. No rule and no validation is written here.
//!
//! - Writes go through the service to the leader, wherever they arrived.
//! - Reads are linearizable unless the request says `CONSISTENCY_STALE`: the service
//!   first brings this master up to the leader's read index.
//! - Every service sits behind the credential and role check ([`crate::auth`]); the
//!   standard health service and server reflection do not, so that load balancers and
//!   generic gRPC tools work.
//! - Every answer names the answering master and the leader it knows (response headers,
//!   see [`leader_hint`]), so clients can skip the hop through a follower.

mod cluster;
mod connection;
mod convert;
mod event;
mod health;
mod leader_hint;
mod license;
mod media_node;
mod recording;
mod session;

use tonic::transport::server::Router;
use tower::layer::util::{Identity, Stack};

pub use event::{EventWatches, OLDEST_EVENT_HEADER, WATCH_FROM_HEADER};
pub use health::{BoundedHealth, health_service, report_health};
pub use leader_hint::{LEADER_HEADER, MASTER_HEADER};
pub use session::session_weight;

use crate::auth::{AuthLayer, Credentials};
use crate::error::Error;
use crate::license::LicenseConfig;
use crate::raft::{Applied, NodeId, Raft, SharedApplied};
use crate::service::{Consistency, Service, Write};
use crate::state::Outcome;

/// Generated protobuf types of the public API.
pub mod pb {
    tonic::include_proto!("chorus.v1");

    /// The encoded descriptors of every proto file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("chorus_descriptor");
}

/// The public services, as reflection lists them.
const SERVICE_NAMES: [&str; 7] = [
    "chorus.v1.SessionService",
    "chorus.v1.ConnectionService",
    "chorus.v1.MediaNodeService",
    "chorus.v1.LicenseService",
    "chorus.v1.ClusterService",
    "chorus.v1.EventService",
    "chorus.v1.RecordingService",
];

/// A response rewrite applied to every call on the client port.
type Rewrite = fn(HttpResponse) -> HttpResponse;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;
/// The client port's router, with its response rewrite and leader hints.
pub type ClientRouter = Router<
    Stack<
        AuthLayer,
        Stack<
            leader_hint::LeaderHintLayer,
            Stack<tower::util::MapResponseLayer<Rewrite>, Identity>,
        >,
    >,
>;

/// Page size when a list request names none.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served, whatever the request asks.
const MAX_PAGE_SIZE: usize = 1000;
/// Most a page of sessions may weigh (their connections' data and ids, roughly as
/// encoded): a page of a thousand full sessions would otherwise be a million connections
/// and gigabytes, built under the state's read lock. A page always holds at least one
/// session, so paging always advances.
const MAX_PAGE_BYTES: usize = 4 << 20;

/// Everything the API handlers share.
#[derive(Clone)]
pub struct ClientApi {
    id: NodeId,
    raft: Raft,
    applied: SharedApplied,
    service: Service,
    license: Option<LicenseConfig>,
    max_message_bytes: usize,
    /// The state digest and the applied index it was computed at: hashing the whole
    /// state is O(state), and status is polled far more often than the state changes.
    digest: std::sync::Arc<std::sync::Mutex<(u64, String)>>,
    /// The event watches: their feed and their bound.
    watches: EventWatches,
}

impl ClientApi {
    /// The API of master `id`.
    pub fn new(
        id: NodeId,
        raft: Raft,
        applied: SharedApplied,
        service: Service,
        license: Option<LicenseConfig>,
        max_message_bytes: usize,
        watches: EventWatches,
    ) -> Self {
        ClientApi {
            id,
            raft,
            applied,
            service,
            license,
            max_message_bytes,
            digest: Default::default(),
            watches,
        }
    }

    /// A router on `transport` (its connection and stream limits set by the caller)
    /// serving every service behind the credential and role check, plus health and
    /// reflection.
    pub fn router(
        self,
        transport: tonic::transport::Server,
        credentials: Credentials,
        health: tonic_health::pb::health_server::HealthServer<
            impl tonic_health::pb::health_server::Health,
        >,
    ) -> Result<ClientRouter, tonic_reflection::server::Error> {
        let limit = self.max_message_bytes;
        macro_rules! secured {
            ($server:ty) => {
                <$server>::new(self.clone())
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit)
            };
        }
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health");
            for name in SERVICE_NAMES {
                builder = builder.with_service_name(name);
            }
            builder
        };
        // grpcurl and friends speak v1 or, older ones, v1alpha: serve both.
        let reflection_alpha = reflection().build_v1alpha()?;
        let reflection = reflection().build_v1()?;
        Ok(transport
            .layer(tower::util::MapResponseLayer::new(
                client_faults_are_not_internal as Rewrite,
            ))
            .layer(leader_hint::LeaderHintLayer::new(
                self.id,
                self.raft.clone(),
            ))
            .layer(AuthLayer::new(credentials))
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(secured!(
                pb::session_service_server::SessionServiceServer<ClientApi>
            ))
            .add_service(secured!(
                pb::connection_service_server::ConnectionServiceServer<ClientApi>
            ))
            .add_service(secured!(
                pb::media_node_service_server::MediaNodeServiceServer<ClientApi>
            ))
            .add_service(secured!(
                pb::license_service_server::LicenseServiceServer<ClientApi>
            ))
            .add_service(secured!(
                pb::cluster_service_server::ClusterServiceServer<ClientApi>
            ))
            .add_service(secured!(
                pb::event_service_server::EventServiceServer<ClientApi>
            ))
            .add_service(secured!(
                pb::recording_service_server::RecordingServiceServer<ClientApi>
            )))
    }

    /// Has the leader apply `write` by the call's deadline: its outcome, or the state
    /// machine's refusal.
    async fn apply<T>(
        &self,
        request: &tonic::Request<T>,
        request_id: String,
        write: Write,
    ) -> Result<Outcome, Error> {
        let deadline = crate::deadline::of(request.metadata());
        self.service
            .write(optional(request_id), write, deadline)
            .await
    }

    /// The applied state, once it is as fresh as the request's `consistency` asks.
    async fn read<T>(
        &self,
        request: &tonic::Request<T>,
        consistency: i32,
    ) -> Result<std::sync::RwLockReadGuard<'_, Applied>, Error> {
        let consistency = match pb::Consistency::try_from(consistency) {
            Ok(pb::Consistency::Stale) => Consistency::Stale,
            Ok(pb::Consistency::Linearizable) => Consistency::Linearizable,
            Err(_) => {
                return Err(Error::invalid(
                    "consistency",
                    format!("unknown value {consistency}"),
                ));
            }
        };
        let deadline = crate::deadline::of(request.metadata());
        self.service.read(consistency, deadline).await
    }
}

/// Rewrites the status of requests tonic refuses before any handler sees them to what
/// they are, the client's fault:
/// - over the message-size limit, tonic says OUT_OF_RANGE; gRPC's own convention, and
///   Chorus's rule for every limit, is RESOURCE_EXHAUSTED;
/// - a message that does not decode (a string field that is not UTF-8, a truncated
///   field), tonic says INTERNAL; it is INVALID_ARGUMENT, and prost's message (kept)
///   names the field.
///
/// Such a refusal is a trailers-only response, so its status is in the headers and is
/// rewritten there.
fn client_faults_are_not_internal<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let status = headers.get("grpc-status").cloned();
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    let rewritten = match status {
        Some(s) if s == "11" && message.contains("message%20length%20too%20large") => "8",
        Some(s) if s == "13" && message.contains("failed%20to%20decode%20Protobuf%20message") => {
            "3"
        }
        _ => return response,
    };
    headers.insert(
        "grpc-status",
        tonic::codegen::http::HeaderValue::from_static(rewritten),
    );
    response
}

/// Proto3 has no absent strings: an empty one means "not given".
fn optional(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Parses the wire name in request field `field`, or takes the default when it is empty.
fn parse_or_default<T>(value: &str, field: &str) -> Result<T, Error>
where
    T: Default + std::str::FromStr<Err = crate::state::Error>,
{
    if value.is_empty() {
        Ok(T::default())
    } else {
        parse(value, field)
    }
}

/// Parses the wire name in request field `field`; an error names that field. The REST
/// API parses its bodies' enums with it too.
pub(crate) fn parse<T>(value: &str, field: &str) -> Result<T, Error>
where
    T: std::str::FromStr<Err = crate::state::Error>,
{
    value.parse().map_err(|e| match e {
        crate::state::Error::InvalidArgument { reason, .. } => Error::invalid(field, reason),
        other => Error::Domain(other),
    })
}

/// One page of `items` (already positioned after the page token): at most `page_size`
/// of them (0: the default), and the token of the next page, empty after the last.
fn page<I, T>(items: I, page_size: u32, key: impl Fn(&T) -> String) -> (Vec<T>, String)
where
    I: Iterator<Item = T>,
{
    page_within(items, page_size, usize::MAX, |_| 0, key)
}

/// As [`page`], and the page also ends before the item that would take the items'
/// total `weight` over `budget` (the first item always goes in).
fn page_within<I, T>(
    items: I,
    page_size: u32,
    budget: usize,
    weight: impl Fn(&T) -> usize,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String)
where
    I: Iterator<Item = T>,
{
    let size = match page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    let mut page = Vec::new();
    let mut spent = 0usize;
    for item in items {
        spent = spent.saturating_add(weight(&item));
        if page.len() == size || (spent > budget && !page.is_empty()) {
            let token = page.last().map(&key).unwrap_or_default();
            return (page, token);
        }
        page.push(item);
    }
    (page, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_ends_at_its_size_or_its_budget_and_always_advances() {
        let key = |n: &usize| n.to_string();
        let items = || 1..=10usize;
        assert_eq!(page(items(), 3, key), (vec![1, 2, 3], "3".to_owned()));
        assert_eq!(page(items(), 10, key), ((1..=10).collect(), String::new()));
        // Weights 1, 2, 3, …: a budget of 6 takes 1 + 2 + 3.
        assert_eq!(
            page_within(items(), 100, 6, |n| *n, key),
            (vec![1, 2, 3], "3".to_owned())
        );
        // An item heavier than the whole budget still makes a page of its own.
        assert_eq!(
            page_within(items().skip(5), 100, 1, |n| *n, key),
            (vec![6], "6".to_owned())
        );
        assert_eq!(
            page_within(items(), 100, usize::MAX, |n| *n, key),
            ((1..=10).collect(), String::new())
        );
    }
}
