//! Bearer-secret checks shared by both ports.
//!
//! Clients present `authorization: Bearer <api secret>` on the client port; masters present
//! the cluster secret on the peer port. Secrets are compared in constant time so the
//! answer's timing reveals nothing about how much of a guess was right.

use subtle::ConstantTimeEq;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Status};

/// Checks `authorization: Bearer <secret>` on incoming requests.
#[derive(Clone)]
pub struct BearerCheck {
    expected: std::sync::Arc<[u8]>,
}

impl BearerCheck {
    /// Accepts requests that carry exactly `secret`.
    pub fn new(secret: &str) -> Self {
        BearerCheck {
            expected: format!("Bearer {secret}").into_bytes().into(),
        }
    }

    /// Accepts or refuses the request's metadata with UNAUTHENTICATED.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let presented = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <secret>`"))?;
        if bool::from(presented.as_bytes().ct_eq(&self.expected)) {
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
}
