//! API errors as the CLB API reports them (`Response.Error.Code` / `Message`).

use std::fmt;

/// An API error: returned to the client as `{"Response":{"Error":{"Code","Message"},"RequestId"}}` with HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Tencent Cloud error code, e.g. `InvalidParameter.LBIdNotFound`.
    pub code: &'static str,
    /// Human readable message.
    pub message: String,
}

impl ApiError {
    /// Builds an error with the given code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Error codes used by the emulator (string constants, so typos fail to compile).
pub mod codes {
    #![allow(missing_docs)]
    pub const SIGNATURE_FAILURE: &str = "AuthFailure.SignatureFailure";
    pub const SIGNATURE_EXPIRE: &str = "AuthFailure.SignatureExpire";
    pub const SECRET_ID_NOT_FOUND: &str = "AuthFailure.SecretIdNotFound";
    pub const INVALID_AUTHORIZATION: &str = "AuthFailure.InvalidAuthorization";
    pub const TOKEN_FAILURE: &str = "AuthFailure.TokenFailure";
    pub const INVALID_ACTION: &str = "InvalidAction";
    pub const NO_SUCH_VERSION: &str = "NoSuchVersion";
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const MISSING_PARAMETER: &str = "MissingParameter";
    pub const UNKNOWN_PARAMETER: &str = "UnknownParameter";
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    pub const FORMAT_ERROR: &str = "InvalidParameter.FormatError";
    pub const LB_NOT_FOUND: &str = "InvalidParameter.LBIdNotFound";
    pub const LISTENER_NOT_FOUND: &str = "InvalidParameter.ListenerIdNotFound";
    pub const LOCATION_NOT_FOUND: &str = "InvalidParameter.LocationNotFound";
    pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";
    pub const LENGTH: &str = "InvalidParameterValue.Length";
    pub const RANGE: &str = "InvalidParameterValue.Range";
    pub const DUPLICATE: &str = "InvalidParameterValue.Duplicate";
    pub const INVALID_FILTER: &str = "InvalidParameterValue.InvalidFilter";
    pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
    pub const UNSUPPORTED_OPERATION: &str = "UnsupportedOperation";
    pub const REQUEST_LIMIT_EXCEEDED: &str = "RequestLimitExceeded";
    pub const RESOURCE_IN_OPERATING: &str = "FailedOperation.ResourceInOperating";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const REQUEST_SIZE_LIMIT_EXCEEDED: &str = "RequestSizeLimitExceeded";
    // STS (tencentcloud-sdk-go sts/v20180813: errors.go, and client.go's list for AssumeRoleWithWebIdentity).
    pub const WEB_IDENTITY_TOKEN_ERROR: &str = "InvalidParameter.WebIdentityTokenError";
    pub const PARAM_ERROR: &str = "InvalidParameter.ParamError";
    pub const ROLE_NOT_FOUND: &str = "ResourceNotFound.RoleNotFound";
    pub const UNAUTHORIZED_OPERATION: &str = "UnauthorizedOperation";
    pub const STS_SYSTEM_ERROR: &str = "InternalError.SystemError";
}
