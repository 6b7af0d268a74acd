//! LicenseService.

use tonic::{Request, Response, Status};

use super::ClientApi;
use super::pb::license_service_server::LicenseService;
use super::pb::{GetLicenseStatusRequest, LicenseStatus};
use crate::state::LicenseStatus as Status_;

#[tonic::async_trait]
impl LicenseService for ClientApi {
    async fn get_license_status(
        &self,
        request: Request<GetLicenseStatusRequest>,
    ) -> Result<Response<LicenseStatus>, Status> {
        let applied = self.read(&request, request.get_ref().consistency).await?;
        let license = applied.state.license();
        let mut status = LicenseStatus::from(license);
        match &self.license {
            Some(config) => {
                let policy = config.policy;
                status.mode = config.source.mode().into();
                status.trust_cap = policy.trust_cap;
                status.base_allowance = policy.base_allowance;
                status.allowance_left = if license.status == Status_::Expired {
                    0
                } else {
                    policy
                        .base_allowance
                        .saturating_add(license.trust.min(policy.trust_cap))
                        .saturating_sub(license.failures)
                };
            }
            None => status.mode = "none".into(),
        }
        Ok(Response::new(status))
    }
}
