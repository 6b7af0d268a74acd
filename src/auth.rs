//! Who may call what: the bearer credentials of both ports, and the roles of the client
//! port.
//!
//! The peer port takes one credential, the cluster secret ([`BearerCheck`]). The client
//! port takes three, each opening one role ([`Credentials`], [`Principal`]):
//! - the **application secret**: sessions, connections and reads, what an OpenVidu
//!   application server does;
//! - a **media-node token** (`node.<id>.<mac>`, an HMAC of the node id under the node
//!   secret, printed by `chorus node token`): register, heartbeat, drain and deregister
//!   that one node, and redeem connection tokens;
//! - the **operator secret**: everything, including membership, leadership transfer and
//!   snapshots.
//!
//! [`AuthLayer`] checks every call on the client port against the table in
//! [`permitted`] before any handler runs; handlers of per-node calls then check the node
//! id with [`act_for_node`]. Secrets are compared in constant time so the answer's
//! timing reveals nothing about how much of a guess was right.

use std::sync::Arc;
use std::task::{Context, Poll};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Status};

/// Checks `authorization: Bearer <secret>` on incoming requests.
#[derive(Clone)]
pub struct BearerCheck {
    /// SHA-256 of `Bearer <secret>`, compared as [`Credentials`] compares.
    expected: [u8; 32],
}

impl BearerCheck {
    /// Accepts requests that carry exactly `secret`.
    pub fn new(secret: &str) -> Self {
        BearerCheck {
            expected: digest(format!("Bearer {secret}").as_bytes()),
        }
    }

    /// Accepts or refuses the request's metadata with UNAUTHENTICATED.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let presented = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <secret>`"))?;
        if bool::from(digest(presented.as_bytes()).ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong secret"))
        }
    }
}

impl tonic::service::Interceptor for BearerCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

/// Adds `authorization: Bearer <secret>` to outgoing requests.
#[derive(Clone)]
pub struct BearerToken {
    value: AsciiMetadataValue,
}

impl BearerToken {
    /// Fails when the secret holds characters that cannot travel in a header.
    pub fn new(secret: &str) -> Result<Self, Status> {
        let value = format!("Bearer {secret}").parse().map_err(|_| {
            Status::invalid_argument("secret holds characters not allowed in a header")
        })?;
        Ok(BearerToken { value })
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.value.clone());
        Ok(request)
    }
}

/// What a client-port credential may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The application secret.
    Application,
    /// The token of the media node with this id.
    MediaNode(String),
    /// The operator secret.
    Operator,
}

impl Principal {
    fn describe(&self) -> String {
        match self {
            Principal::Application => "the application secret".into(),
            Principal::MediaNode(id) => format!("media node `{id}`'s token"),
            Principal::Operator => "the operator secret".into(),
        }
    }
}

/// The role a call needs, as a refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Application,
    MediaNode,
    Operator,
}

impl Role {
    fn needs(self) -> &'static str {
        match self {
            Role::Application => "the application role (the application secret)",
            Role::MediaNode => "the media-node role (the node's own token)",
            Role::Operator => "the operator role (the operator secret)",
        }
    }

    fn admits(self, principal: &Principal) -> bool {
        matches!(
            (self, principal),
            (Role::Application, Principal::Application)
                | (Role::MediaNode, Principal::MediaNode(_))
        )
    }
}

/// The prefix of every media-node token.
const NODE_TOKEN_PREFIX: &str = "node.";

type NodeMac = Hmac<Sha256>;

/// The token media node `node_id` presents: `node.<id>.<hex HMAC-SHA256 of the id under
/// the node secret>`. Anyone holding the node secret can make one; a token opens only
/// the node it names.
pub fn node_token(node_secret: &str, node_id: &str) -> String {
    let mut mac = NodeMac::new_from_slice(node_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(node_id.as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{NODE_TOKEN_PREFIX}{node_id}.{tag}")
}

/// The credentials the client port accepts.
#[derive(Clone)]
pub struct Credentials {
    /// SHA-256 of the secrets: compared digest to digest, so that neither the content
    /// nor the length of a secret shows in the time a refusal takes.
    application: [u8; 32],
    operator: [u8; 32],
    /// Media-node tokens are refused when no node secret is configured.
    node_secret: Option<Arc<str>>,
}

impl Credentials {
    /// Accepts the application and operator secrets, and the tokens `node_secret` makes.
    pub fn new(application: &str, operator: &str, node_secret: Option<&str>) -> Self {
        Credentials {
            application: digest(application.as_bytes()),
            operator: digest(operator.as_bytes()),
            node_secret: node_secret.map(Into::into),
        }
    }

    /// Who presented `authorization`, or UNAUTHENTICATED.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, Status> {
        let presented = authorization
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <secret>`"))?;
        let presented = presented
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| Status::unauthenticated("`authorization` is not `Bearer <secret>`"))?;
        if let Some(rest) = presented.strip_prefix(NODE_TOKEN_PREFIX.as_bytes()) {
            return self.node(rest);
        }
        self.secret(presented)
            .ok_or_else(|| Status::unauthenticated("wrong secret"))
    }

    /// The principal whose secret (the application's or the operator's) `presented`
    /// is, compared in constant time; `None` for any other.
    pub fn secret(&self, presented: &[u8]) -> Option<Principal> {
        // Both compared whatever the first gives, so timing tells neither apart.
        let presented = digest(presented);
        let operator = presented.ct_eq(&self.operator);
        let application = presented.ct_eq(&self.application);
        if bool::from(operator) {
            Some(Principal::Operator)
        } else if bool::from(application) {
            Some(Principal::Application)
        } else {
            None
        }
    }

    /// Checks the `<id>.<mac>` of a media-node token.
    fn node(&self, rest: &[u8]) -> Result<Principal, Status> {
        let Some(secret) = &self.node_secret else {
            return Err(Status::unauthenticated(
                "media-node tokens are not accepted: this cluster has no node secret",
            ));
        };
        let malformed = || Status::unauthenticated("malformed media-node token");
        let text = std::str::from_utf8(rest).map_err(|_| malformed())?;
        let (id, tag) = text.rsplit_once('.').ok_or_else(malformed)?;
        let tag = decode_hex(tag).ok_or_else(malformed)?;
        let mut mac = NodeMac::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&tag)
            .map_err(|_| Status::unauthenticated("wrong media-node token"))?;
        Ok(Principal::MediaNode(id.to_owned()))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(bytes).into()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `principal` may call `path` (`/package.Service/Method`) on the client port.
/// The operator may call everything; the table lists what the other two may.
pub fn permitted(path: &str, principal: &Principal) -> Result<(), Status> {
    if *principal == Principal::Operator {
        return Ok(());
    }
    // Anything outside `chorus.v1` (a service added later, say) is the operator's
    // until the table says otherwise.
    let method = path.trim_start_matches('/');
    let method = method.strip_prefix("chorus.v1.").unwrap_or(method);
    use Role::*;
    let roles: &[Role] = match method {
        "ClusterService/GetClusterStatus" | "ConnectionService/JoinConnection" => {
            &[Application, MediaNode]
        }
        "MediaNodeService/GetMediaNode" => &[Application, MediaNode],
        "MediaNodeService/ListMediaNodes" => &[Application],
        "MediaNodeService/RegisterMediaNode"
        | "MediaNodeService/Heartbeat"
        | "MediaNodeService/SetMediaNodeStatus"
        | "MediaNodeService/DeregisterMediaNode" => &[MediaNode],
        _ if method.starts_with("SessionService/")
            || method.starts_with("ConnectionService/")
            || method.starts_with("LicenseService/")
            || method.starts_with("EventService/")
            || method.starts_with("RecordingService/") =>
        {
            &[Application]
        }
        // Membership, leadership transfer, snapshots, and whatever else comes.
        _ => &[],
    };
    if roles.iter().any(|role| role.admits(principal)) {
        return Ok(());
    }
    let needed = roles
        .iter()
        .map(|r| r.needs())
        .chain(std::iter::once(Operator.needs()))
        .collect::<Vec<_>>()
        .join(" or ");
    Err(Status::permission_denied(format!(
        "`{method}` needs {needed}; {} was presented",
        principal.describe()
    )))
}

/// Whether the caller of a per-node call may act for media node `node_id`: the operator
/// for any node, a media node for itself only. The principal is the one [`AuthLayer`]
/// put in the request's extensions.
pub fn act_for_node<T>(request: &tonic::Request<T>, node_id: &str) -> Result<(), Status> {
    match request.extensions().get::<Principal>() {
        Some(Principal::Operator) => Ok(()),
        Some(Principal::MediaNode(own)) if own == node_id => Ok(()),
        Some(Principal::MediaNode(own)) => Err(Status::permission_denied(format!(
            "media node `{own}`'s token cannot act for media node `{node_id}`"
        ))),
        _ => Err(Status::permission_denied(
            "acting for a media node needs that node's token or the operator secret",
        )),
    }
}

/// Checks every client-port call against [`Credentials`] and [`permitted`], and hands
/// the caller's [`Principal`] to the handler in the request's extensions. The standard
/// health service and server reflection (`/grpc.*`) stay open for load balancers and
/// generic tools.
#[derive(Clone)]
pub struct AuthLayer {
    credentials: Credentials,
}

impl AuthLayer {
    pub fn new(credentials: Credentials) -> Self {
        AuthLayer { credentials }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            credentials: self.credentials.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    credentials: Credentials,
}

type HttpRequest<B> = tonic::codegen::http::Request<B>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<HttpRequest<B>> for Authorize<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, futures::future::Ready<Result<HttpResponse, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest<B>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with("/grpc.") {
            return futures::future::Either::Left(self.inner.call(request));
        }
        let verdict = self
            .credentials
            .authenticate(
                request
                    .headers()
                    .get("authorization")
                    .map(|value| value.as_bytes()),
            )
            .and_then(|principal| permitted(path, &principal).map(|()| principal));
        match verdict {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                futures::future::Either::Left(self.inner.call(request))
            }
            Err(status) => {
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn only_the_exact_secret_passes() {
        let check = BearerCheck::new("s3cret-value");
        assert!(check.check(&with("Bearer s3cret-value")).is_ok());
        for bad in [
            "Bearer s3cret-valu",
            "Bearer s3cret-value2",
            "s3cret-value",
            "Basic x",
        ] {
            let err = check.check(&with(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let err = check.check(&MetadataMap::new()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("missing"));
    }

    fn creds() -> Credentials {
        Credentials::new("app-secret", "operator-secret", Some("node-secret"))
    }

    fn who(value: &str) -> Result<Principal, Status> {
        creds().authenticate(Some(value.as_bytes()))
    }

    #[test]
    fn each_credential_opens_its_role_and_nothing_else_opens_any() {
        assert_eq!(who("Bearer app-secret").unwrap(), Principal::Application);
        assert_eq!(who("Bearer operator-secret").unwrap(), Principal::Operator);
        let token = node_token("node-secret", "media-1");
        assert_eq!(
            who(&format!("Bearer {token}")).unwrap(),
            Principal::MediaNode("media-1".into())
        );
        // Another secret's token, a token with its id changed, a truncated one.
        let forged = node_token("other-secret", "media-1");
        let renamed = token.replace("media-1", "media-2");
        let cut = &token[..token.len() - 2];
        for bad in [
            "Bearer app-secre",
            "Bearer operator-secret ",
            "app-secret",
            &format!("Bearer {forged}"),
            &format!("Bearer {renamed}"),
            &format!("Bearer {cut}"),
            "Bearer node.media-1.zz",
            "Bearer node.",
        ] {
            let err = who(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let without = Credentials::new("app-secret", "operator-secret", None);
        let err = without
            .authenticate(Some(format!("Bearer {token}").as_bytes()))
            .unwrap_err();
        assert!(err.message().contains("no node secret"), "{err}");
    }

    #[test]
    fn a_call_outside_its_role_is_denied_naming_the_role_it_needs() {
        let app = Principal::Application;
        let node = Principal::MediaNode("m".into());
        let op = Principal::Operator;
        for path in [
            "/chorus.v1.SessionService/CreateSession",
            "/chorus.v1.ConnectionService/CreateConnection",
            "/chorus.v1.LicenseService/GetLicenseStatus",
            "/chorus.v1.MediaNodeService/ListMediaNodes",
        ] {
            assert!(permitted(path, &app).is_ok(), "{path}");
            assert!(permitted(path, &op).is_ok(), "{path}");
            let err = permitted(path, &node).unwrap_err();
            assert_eq!(err.code(), tonic::Code::PermissionDenied);
            assert!(err.message().contains("application role"), "{err}");
        }
        for path in [
            "/chorus.v1.MediaNodeService/RegisterMediaNode",
            "/chorus.v1.MediaNodeService/Heartbeat",
        ] {
            assert!(permitted(path, &node).is_ok());
            let err = permitted(path, &app).unwrap_err();
            assert!(err.message().contains("media-node role"), "{err}");
        }
        for path in [
            "/chorus.v2.SessionService/CreateSession",
            "/chorus.v1.ClusterService/AddLearner",
            "/chorus.v1.ClusterService/ChangeMembership",
            "/chorus.v1.ClusterService/TransferLeadership",
            "/chorus.v1.ClusterService/TriggerSnapshot",
        ] {
            assert!(permitted(path, &op).is_ok());
            for other in [&app, &node] {
                let err = permitted(path, other).unwrap_err();
                assert_eq!(err.code(), tonic::Code::PermissionDenied);
                assert!(err.message().contains("needs the operator role"), "{err}");
            }
        }
        for path in [
            "/chorus.v1.ClusterService/GetClusterStatus",
            "/chorus.v1.ConnectionService/JoinConnection",
        ] {
            assert!(permitted(path, &app).is_ok() && permitted(path, &node).is_ok());
        }
    }

    #[test]
    fn a_node_token_acts_for_its_own_node_only() {
        let mut request = tonic::Request::new(());
        request
            .extensions_mut()
            .insert(Principal::MediaNode("m1".into()));
        assert!(act_for_node(&request, "m1").is_ok());
        let err = act_for_node(&request, "m2").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("`m1`") && err.message().contains("`m2`"));
        request.extensions_mut().insert(Principal::Operator);
        assert!(act_for_node(&request, "m2").is_ok());
        request.extensions_mut().insert(Principal::Application);
        assert!(act_for_node(&request, "m2").is_err());
    }
}
