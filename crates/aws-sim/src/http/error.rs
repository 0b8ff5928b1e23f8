//! Failures as the wire answers them, shared by the IAM and EKS protocols.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pod_identity_aws::AwsError;

/// The HTTP status of an AWS error: its own (400 if that is no valid status), or 504 for
/// faults without one (timeouts).
pub(super) fn status_of(e: &AwsError) -> StatusCode {
    StatusCode::from_u16(e.http_status.unwrap_or(504)).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Any failure as IAM or EKS would answer it.
pub(super) fn failure(e: pod_identity_aws::Error, answer: fn(&AwsError) -> Response) -> Response {
    match e {
        pod_identity_aws::Error::Aws(e) => answer(&e),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()).into_response(),
    }
}
