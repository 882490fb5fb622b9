//! The Auth service. Authentication is not implemented yet: AuthStatus reports it
//! disabled (which is true), every other RPC answers Unimplemented.

use strake_proto::etcdserverpb::auth_server::Auth;
use strake_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::context::Shared;
use crate::errors::{server_status, ServerError};

/// The Auth service.
#[derive(Clone)]
pub struct AuthService {
    server: Shared,
}

impl AuthService {
    /// The service.
    pub fn new(server: Shared) -> AuthService {
        AuthService { server }
    }
}

fn unimplemented<T>(rpc: &'static str) -> Result<Response<T>, Status> {
    Err(server_status(&ServerError::Unimplemented(rpc)))
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, _: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        unimplemented("AuthEnable")
    }
    async fn auth_disable(&self, _: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        unimplemented("AuthDisable")
    }
    async fn auth_status(&self, _: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(AuthStatusResponse { header: Some(self.server.header(0)), enabled: false, auth_revision: 0 }))
    }
    async fn authenticate(&self, _: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        unimplemented("Authenticate")
    }
    async fn user_add(&self, _: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        unimplemented("UserAdd")
    }
    async fn user_get(&self, _: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        unimplemented("UserGet")
    }
    async fn user_list(&self, _: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        unimplemented("UserList")
    }
    async fn user_delete(&self, _: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        unimplemented("UserDelete")
    }
    async fn user_change_password(
        &self,
        _: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        unimplemented("UserChangePassword")
    }
    async fn user_grant_role(
        &self,
        _: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        unimplemented("UserGrantRole")
    }
    async fn user_revoke_role(
        &self,
        _: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        unimplemented("UserRevokeRole")
    }
    async fn role_add(&self, _: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        unimplemented("RoleAdd")
    }
    async fn role_get(&self, _: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        unimplemented("RoleGet")
    }
    async fn role_list(&self, _: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        unimplemented("RoleList")
    }
    async fn role_delete(&self, _: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        unimplemented("RoleDelete")
    }
    async fn role_grant_permission(
        &self,
        _: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        unimplemented("RoleGrantPermission")
    }
    async fn role_revoke_permission(
        &self,
        _: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        unimplemented("RoleRevokePermission")
    }
}
