//! LicenseService.

use tonic::{Request, Response, Status};

use super::ClientApi;
use super::pb::license_service_server::LicenseService;
use super::pb::{GetLicenseStatusRequest, LicenseStatus};

#[tonic::async_trait]
impl LicenseService for ClientApi {
    async fn get_license_status(
        &self,
        request: Request<GetLicenseStatusRequest>,
    ) -> Result<Response<LicenseStatus>, Status> {
        self.read_barrier(&request, request.get_ref().consistency)
            .await?;
        let applied = crate::raft::read(&self.applied);
        Ok(Response::new(applied.state.license().into()))
    }
}
