//! The one place SDK failures become [`AwsError`]s with their [`ErrorClass`].
//!
//! [`classify`] looks, in order, at the service's error code (and, for EKS's
//! `InvalidParameterException`, the message that tells a role not yet visible apart from
//! bad input; a cross-account role is bad input whatever the code), then the HTTP status, then the kind of failure when no answer came:
//! timeouts, dispatch failures, requests that could not be built, credentials that could
//! not be loaded. The AWS request id is kept from the error body or the response headers.
//!
//! Not covered: per-operation refinements (an `InvalidInput` that really means a missing
//! resource); callers that know better override the class themselves.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{AwsError, ErrorClass};

/// The message EKS gives when a role exists in IAM but is not yet visible to EKS.
const ROLE_NOT_VISIBLE: &str = "Role provided in the request does not exist";

/// The message EKS gives when an association's role is in another account than the
/// cluster, as `InvalidParameterException` or as `AccessDeniedException` (403): bad
/// input either way, never a permission the operator lacks.
const CROSS_ACCOUNT_PASS_ROLE: &str = "Cross-account pass role is not allowed";

/// Maps one failed SDK call of `operation` (e.g. `CreateRole`) to an [`AwsError`].
pub fn classify<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let error = |(class, throttled): (ErrorClass, bool), code: &str, message: String| AwsError {
        class,
        operation: operation.to_string(),
        code: code.to_string(),
        message,
        throttled,
        http_status: err.raw_response().map(|r| r.status().as_u16()),
        request_id: request_id(err),
    };
    let detail = || DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service) => {
            let meta = service.err().meta();
            let status = service.raw().status().as_u16();
            // An XML error body in a shape the protocol's parser does not read (moto's
            // authorization errors come as `<Errors><Error>`) still names its code.
            let body = service.raw().body().bytes().unwrap_or_default();
            let code = meta
                .code()
                .map(str::to_string)
                .or_else(|| xml_element(body, "Code"));
            let message = meta
                .message()
                .map(str::to_string)
                .or_else(|| xml_element(body, "Message"))
                .unwrap_or_default();
            match code {
                Some(code) => {
                    let class =
                        class_of_code(&code, &message).unwrap_or_else(|| class_of_status(status));
                    error(class, &code, message)
                }
                None => error(class_of_status(status), &format!("Http{status}"), detail()),
            }
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status();
            let class = if status.is_success() {
                // A success status whose body could not be read: a garbled answer.
                (ErrorClass::Transient, false)
            } else {
                class_of_status(status.as_u16())
            };
            error(class, "ResponseError", detail())
        }
        SdkError::TimeoutError(_) => error((ErrorClass::Transient, false), "Timeout", detail()),
        SdkError::DispatchFailure(dispatch) => match credentials_failure(err) {
            Some((class, code)) => error((class, false), code, detail()),
            None if dispatch.is_timeout() => {
                error((ErrorClass::Transient, false), "Timeout", detail())
            }
            None => error((ErrorClass::Transient, false), "DispatchFailure", detail()),
        },
        SdkError::ConstructionFailure(_) => match credentials_failure(err) {
            Some((class, code)) => error((class, false), code, detail()),
            // The request could not be built from what was given.
            None => error(
                (ErrorClass::UserInput, false),
                "ConstructionFailure",
                detail(),
            ),
        },
        _ => error((ErrorClass::Transient, false), "Unknown", detail()),
    }
}

/// `Ok(None)` for a not-found failure, the failure otherwise: how get and describe
/// calls answer for something that does not exist.
pub fn none_if_not_found<T>(err: AwsError) -> crate::Result<Option<T>> {
    if err.class == ErrorClass::NotFound {
        Ok(None)
    } else {
        Err(err.into())
    }
}

/// Every AWS error code the operator knows: its class, whether it means throttling, and
/// the HTTP status AWS answers it with. The one table of codes: the SDK adapters'
/// classification reads the class ([`class_of_code`]), and the simulator and fault
/// injection read class and status to answer as AWS would ([`code_class`]).
const CODES: &[(&str, ErrorClass, bool, u16)] = {
    use ErrorClass::*;
    &[
        // Throttling: IAM's query protocol answers 400, EKS's REST-JSON 429.
        ("Throttling", Transient, true, 400),
        ("RequestLimitExceeded", Transient, true, 400),
        ("RequestThrottled", Transient, true, 400),
        ("ThrottlingException", Transient, true, 429),
        ("ThrottledException", Transient, true, 429),
        ("RequestThrottledException", Transient, true, 429),
        ("TooManyRequestsException", Transient, true, 429),
        ("SlowDown", Transient, true, 429),
        ("ServiceFailure", Transient, false, 500),
        ("ServerException", Transient, false, 500),
        ("InternalFailure", Transient, false, 500),
        ("InternalError", Transient, false, 500),
        ("InternalServerError", Transient, false, 500),
        ("ServiceUnavailableException", Transient, false, 503),
        ("ServiceUnavailable", Transient, false, 503),
        ("ConcurrentModification", Transient, false, 409),
        ("ConcurrentModificationException", Transient, false, 409),
        ("RequestTimeout", Transient, false, 408),
        ("RequestTimeoutException", Transient, false, 408),
        ("NoSuchEntity", NotFound, false, 404),
        ("ResourceNotFoundException", NotFound, false, 404),
        ("NotFoundException", NotFound, false, 404),
        ("EntityAlreadyExists", Conflict, false, 409),
        ("DeleteConflict", Conflict, false, 409),
        ("ResourceInUseException", Conflict, false, 409),
        ("ResourceInUse", Conflict, false, 409),
        ("UnmodifiableEntity", Conflict, false, 409),
        ("MalformedPolicyDocument", UserInput, false, 400),
        ("InvalidInput", UserInput, false, 400),
        ("ValidationError", UserInput, false, 400),
        ("ValidationException", UserInput, false, 400),
        ("InvalidParameterException", UserInput, false, 400),
        ("InvalidParameterValue", UserInput, false, 400),
        ("InvalidParameterCombination", UserInput, false, 400),
        ("InvalidRequestException", UserInput, false, 400),
        ("PolicyNotAttachable", UserInput, false, 400),
        ("PackedPolicyTooLarge", UserInput, false, 400),
        ("MissingParameter", UserInput, false, 400),
        ("LimitExceeded", Quota, false, 409),
        ("LimitExceededException", Quota, false, 409),
        ("ResourceLimitExceededException", Quota, false, 400),
        ("ServiceQuotaExceeded", Quota, false, 400),
        ("ServiceQuotaExceededException", Quota, false, 400),
        ("AccessDenied", AccessDenied, false, 403),
        ("AccessDeniedException", AccessDenied, false, 403),
        ("UnauthorizedOperation", AccessDenied, false, 403),
        ("UnauthorizedException", AccessDenied, false, 403),
        ("NotAuthorized", AccessDenied, false, 403),
        ("ExpiredToken", AccessDenied, false, 403),
        ("ExpiredTokenException", AccessDenied, false, 403),
        ("InvalidClientTokenId", AccessDenied, false, 403),
        ("UnrecognizedClientException", AccessDenied, false, 403),
        ("SignatureDoesNotMatch", AccessDenied, false, 403),
        ("IncompleteSignature", AccessDenied, false, 403),
        ("MissingAuthenticationToken", AccessDenied, false, 403),
    ]
};

/// The row of [`CODES`] for `code`.
fn known(code: &str) -> Option<(ErrorClass, bool, u16)> {
    CODES
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|&(_, class, throttled, status)| (class, throttled, status))
}

/// The class of a service error code, and whether it means throttling; `None` for a
/// code `CODES` does not know, which then goes by HTTP status. Two messages say more
/// than their code: EKS's `InvalidParameterException` about a role not yet visible
/// (propagation), and a cross-account pass role, bad input whatever the code (EKS
/// answers it as `InvalidParameterException` or as `AccessDeniedException`); neither
/// overrides a code that means throttling, a transient failure, a conflict or a missing
/// resource.
pub fn class_of_code(code: &str, message: &str) -> Option<(ErrorClass, bool)> {
    use ErrorClass::*;
    match known(code) {
        Some((class @ (Transient | Conflict | NotFound), throttled, _)) => Some((class, throttled)),
        _ if code == "InvalidParameterException" && message.contains(ROLE_NOT_VISIBLE) => {
            Some((Propagation, false))
        }
        _ if message.contains(CROSS_ACCOUNT_PASS_ROLE) => Some((UserInput, false)),
        found => found.map(|(class, throttled, _)| (class, throttled)),
    }
}

/// The class of an HTTP status when no known error code says more.
pub fn class_of_status(status: u16) -> (ErrorClass, bool) {
    use ErrorClass::*;
    match status {
        429 => (Transient, true),
        401 | 403 => (AccessDenied, false),
        404 => (NotFound, false),
        409 => (Conflict, false),
        400..=499 => (UserInput, false),
        _ => (Transient, false),
    }
}

/// The class, HTTP status and throttling flag AWS gives an error code: the status from
/// `CODES` (400 for a code it does not know), the class and flag as the SDK adapters'
/// classification reads that answer ([`class_of_code`], else [`class_of_status`]).
/// Local codes for answers that never came (`Timeout`, `DispatchFailure`) have no
/// status.
pub fn code_class(code: &str, message: &str) -> (ErrorClass, Option<u16>, bool) {
    if matches!(code, "Timeout" | "DispatchFailure") {
        return (ErrorClass::Transient, None, false);
    }
    let status = known(code).map_or(400, |(.., status)| status);
    let (class, throttled) =
        class_of_code(code, message).unwrap_or_else(|| class_of_status(status));
    (class, Some(status), throttled)
}

/// An [`AwsError`] for `code`, classified as the SDK adapters would, with a fresh
/// request id.
pub fn aws_error(operation: &str, code: &str, message: &str) -> crate::Error {
    let (class, http_status, throttled) = code_class(code, message);
    crate::Error::Aws(AwsError {
        class,
        operation: operation.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
        throttled,
        http_status,
        request_id: Some(uuid::Uuid::new_v4().to_string()),
    })
}

/// When credentials could not be had, the class and code that say why.
fn credentials_failure(err: &(dyn StdError + 'static)) -> Option<(ErrorClass, &'static str)> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = next {
        if let Some(failure) = current.downcast_ref::<CredentialsError>() {
            return Some(match failure {
                // Nothing in the chain had credentials, or the configuration is wrong:
                // waiting will not help until someone fixes the environment.
                CredentialsError::CredentialsNotLoaded(_) => {
                    (ErrorClass::AccessDenied, "CredentialsNotLoaded")
                }
                CredentialsError::InvalidConfiguration(_) => {
                    (ErrorClass::AccessDenied, "InvalidCredentialsConfiguration")
                }
                // A provider that answered badly or slowly (the Pod Identity agent not
                // yet up, STS throttling) may well answer next time.
                CredentialsError::ProviderTimedOut(_) => {
                    (ErrorClass::Transient, "CredentialsProviderTimedOut")
                }
                _ => (ErrorClass::Transient, "CredentialsProviderError"),
            });
        }
        next = current.source();
    }
    None
}

/// The request id: from the SDK's error metadata (which takes it from the response
/// headers), else the headers themselves, else the `<RequestId>` of a query-protocol
/// error body (moto and ministack put it only there).
fn request_id<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<String> {
    let from_meta = err
        .as_service_error()
        .and_then(|e| e.meta().extra("aws_request_id"))
        .map(str::to_string);
    let raw = err.raw_response()?;
    let headers = raw.headers();
    from_meta
        .or_else(|| {
            headers
                .get("x-amzn-requestid")
                .or_else(|| headers.get("x-amz-request-id"))
                .map(str::to_string)
        })
        .or_else(|| raw.body().bytes().and_then(|b| xml_element(b, "RequestId")))
}

/// The text of the first `<name>` element of an XML body.
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{name}>"))?;
    Some(text[start..start + len].trim().to_string()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
