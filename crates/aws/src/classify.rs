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
mod tests {
    use super::*;
    use aws_sdk_eks::operation::create_pod_identity_association::CreatePodIdentityAssociationError as EksCreateError;
    use aws_sdk_iam::operation::create_role::CreateRoleError;
    use aws_sdk_iam::operation::delete_role::DeleteRoleError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn raw(status: u16, request_id_header: Option<&str>) -> HttpResponse {
        let status = StatusCode::try_from(status).expect("valid status");
        let mut response = HttpResponse::new(status, SdkBody::empty());
        if let Some(id) = request_id_header {
            response
                .headers_mut()
                .insert("x-amzn-requestid", id.to_string());
        }
        response
    }

    /// Metadata as the SDK's query-protocol deserializer fills it for IAM.
    fn iam_meta(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message(message)
            .custom("aws_request_id", "iam-req-1")
            .build()
    }

    fn eks_meta(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn iam_generic(code: &str, status: u16) -> SdkError<CreateRoleError, HttpResponse> {
        SdkError::service_error(
            CreateRoleError::generic(iam_meta(code, "from IAM")),
            raw(status, None),
        )
    }

    fn eks_generic(
        code: &str,
        message: &str,
        status: u16,
    ) -> SdkError<EksCreateError, HttpResponse> {
        SdkError::service_error(
            EksCreateError::generic(eks_meta(code, message)),
            raw(status, Some("eks-req-1")),
        )
    }

    fn class_and_throttled<E>(err: &SdkError<E, HttpResponse>) -> (ErrorClass, bool)
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let e = classify("Op", err);
        (e.class, e.throttled)
    }

    #[test]
    fn modeled_iam_errors_keep_code_message_status_and_request_id() {
        use aws_sdk_iam::types::error::EntityAlreadyExistsException;
        let err = SdkError::service_error(
            CreateRoleError::EntityAlreadyExistsException(
                EntityAlreadyExistsException::builder()
                    .message("Role with name r already exists.")
                    .meta(iam_meta(
                        "EntityAlreadyExists",
                        "Role with name r already exists.",
                    ))
                    .build(),
            ),
            raw(409, None),
        );
        let e = classify("CreateRole", &err);
        assert_eq!(
            e,
            AwsError {
                class: ErrorClass::Conflict,
                operation: "CreateRole".into(),
                code: "EntityAlreadyExists".into(),
                message: "Role with name r already exists.".into(),
                throttled: false,
                http_status: Some(409),
                request_id: Some("iam-req-1".into()),
            }
        );
    }

    #[test]
    fn modeled_iam_errors_of_every_class() {
        use aws_sdk_iam::types::error::*;
        let cases: Vec<(SdkError<DeleteRoleError, HttpResponse>, ErrorClass)> = vec![
            (
                SdkError::service_error(
                    DeleteRoleError::DeleteConflictException(
                        DeleteConflictException::builder()
                            .meta(iam_meta("DeleteConflict", "must detach all policies first"))
                            .build(),
                    ),
                    raw(409, None),
                ),
                ErrorClass::Conflict,
            ),
            (
                SdkError::service_error(
                    DeleteRoleError::NoSuchEntityException(
                        NoSuchEntityException::builder()
                            .meta(iam_meta("NoSuchEntity", "Role r not found"))
                            .build(),
                    ),
                    raw(404, None),
                ),
                ErrorClass::NotFound,
            ),
            (
                SdkError::service_error(
                    DeleteRoleError::ConcurrentModificationException(
                        ConcurrentModificationException::builder()
                            .meta(iam_meta("ConcurrentModification", "try again"))
                            .build(),
                    ),
                    raw(409, None),
                ),
                ErrorClass::Transient,
            ),
            (
                SdkError::service_error(
                    DeleteRoleError::ServiceFailureException(
                        ServiceFailureException::builder()
                            .meta(iam_meta("ServiceFailure", "internal"))
                            .build(),
                    ),
                    raw(500, None),
                ),
                ErrorClass::Transient,
            ),
            (
                SdkError::service_error(
                    DeleteRoleError::LimitExceededException(
                        LimitExceededException::builder()
                            .meta(iam_meta("LimitExceeded", "too many"))
                            .build(),
                    ),
                    raw(409, None),
                ),
                ErrorClass::Quota,
            ),
            (
                SdkError::service_error(
                    DeleteRoleError::UnmodifiableEntityException(
                        UnmodifiableEntityException::builder()
                            .meta(iam_meta("UnmodifiableEntity", "service-linked role"))
                            .build(),
                    ),
                    raw(400, None),
                ),
                ErrorClass::Conflict,
            ),
        ];
        for (err, class) in cases {
            let e = classify("DeleteRole", &err);
            assert_eq!(e.class, class, "{e}");
            assert_eq!(e.request_id.as_deref(), Some("iam-req-1"));
            assert!(!e.throttled);
        }
        let malformed = SdkError::service_error(
            CreateRoleError::MalformedPolicyDocumentException(
                MalformedPolicyDocumentException::builder()
                    .meta(iam_meta(
                        "MalformedPolicyDocument",
                        "Syntax errors in policy.",
                    ))
                    .build(),
            ),
            raw(400, None),
        );
        assert_eq!(
            class_and_throttled(&malformed),
            (ErrorClass::UserInput, false)
        );
        let invalid = SdkError::service_error(
            CreateRoleError::InvalidInputException(
                InvalidInputException::builder()
                    .meta(iam_meta("InvalidInput", "bad path"))
                    .build(),
            ),
            raw(400, None),
        );
        assert_eq!(
            class_and_throttled(&invalid),
            (ErrorClass::UserInput, false)
        );
    }

    #[test]
    fn modeled_eks_errors_and_the_role_propagation_message() {
        use aws_sdk_eks::types::error::*;
        let in_use = SdkError::service_error(
            EksCreateError::ResourceInUseException(
                ResourceInUseException::builder()
                    .message("Association already exists")
                    .meta(eks_meta(
                        "ResourceInUseException",
                        "Association already exists",
                    ))
                    .build(),
            ),
            raw(409, Some("eks-req-2")),
        );
        let e = classify("CreatePodIdentityAssociation", &in_use);
        assert_eq!(e.class, ErrorClass::Conflict);
        assert_eq!(e.request_id.as_deref(), Some("eks-req-2"));

        let not_visible_msg = "Role provided in the request does not exist";
        let propagating = SdkError::service_error(
            EksCreateError::InvalidParameterException(
                InvalidParameterException::builder()
                    .message(not_visible_msg)
                    .meta(eks_meta("InvalidParameterException", not_visible_msg))
                    .build(),
            ),
            raw(400, None),
        );
        assert_eq!(
            class_and_throttled(&propagating),
            (ErrorClass::Propagation, false)
        );

        let cross_account = eks_generic(
            "InvalidParameterException",
            "Cross-account pass role is not allowed.",
            400,
        );
        assert_eq!(
            class_and_throttled(&cross_account),
            (ErrorClass::UserInput, false)
        );
        // The same refusal as a 403 is still the spec's, not a missing permission.
        let cross_account_denied = eks_generic(
            "AccessDeniedException",
            "Cross-account pass role is not allowed.",
            403,
        );
        assert_eq!(
            class_and_throttled(&cross_account_denied),
            (ErrorClass::UserInput, false)
        );

        let not_found = SdkError::service_error(
            EksCreateError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .meta(eks_meta("ResourceNotFoundException", "No cluster found"))
                    .build(),
            ),
            raw(404, None),
        );
        assert_eq!(
            class_and_throttled(&not_found),
            (ErrorClass::NotFound, false)
        );

        let limit = SdkError::service_error(
            EksCreateError::ResourceLimitExceededException(
                ResourceLimitExceededException::builder()
                    .meta(eks_meta("ResourceLimitExceededException", "5000"))
                    .build(),
            ),
            raw(400, None),
        );
        assert_eq!(class_and_throttled(&limit), (ErrorClass::Quota, false));

        let server = SdkError::service_error(
            EksCreateError::ServerException(
                ServerException::builder()
                    .meta(eks_meta("ServerException", "oops"))
                    .build(),
            ),
            raw(500, None),
        );
        assert_eq!(class_and_throttled(&server), (ErrorClass::Transient, false));
    }

    #[test]
    fn unmodeled_codes_of_every_class() {
        use ErrorClass::*;
        let table: &[(&str, u16, ErrorClass, bool)] = &[
            ("Throttling", 400, Transient, true),
            ("ThrottlingException", 400, Transient, true),
            ("RequestLimitExceeded", 400, Transient, true),
            ("TooManyRequestsException", 429, Transient, true),
            ("ServiceUnavailable", 503, Transient, false),
            ("InternalFailure", 500, Transient, false),
            ("ValidationError", 400, UserInput, false),
            ("ServiceQuotaExceeded", 400, Quota, false),
            ("AccessDenied", 403, AccessDenied, false),
            ("AccessDeniedException", 403, AccessDenied, false),
            ("UnauthorizedOperation", 403, AccessDenied, false),
            ("ExpiredToken", 403, AccessDenied, false),
        ];
        for (code, status, class, throttled) in table {
            let e = classify("CreateRole", &iam_generic(code, *status));
            assert_eq!((e.class, e.throttled), (*class, *throttled), "{code}");
            assert_eq!(e.code, *code);
            assert_eq!(e.http_status, Some(*status));
        }
        let eks = classify(
            "CreatePodIdentityAssociation",
            &eks_generic("AccessDeniedException", "no", 403),
        );
        assert_eq!(eks.class, AccessDenied);
        assert_eq!(eks.request_id.as_deref(), Some("eks-req-1"));
    }

    #[test]
    fn an_error_made_for_a_code_is_what_the_adapters_read_from_its_answer() {
        let messages = [
            "from AWS",
            ROLE_NOT_VISIBLE,
            "Cross-account pass role is not allowed.",
        ];
        let codes = CODES.iter().map(|(c, ..)| *c).chain(["SomethingNew"]);
        for code in codes {
            for message in messages {
                let made = aws_error("CreatePodIdentityAssociation", code, message);
                let made = made.aws().expect("an AWS error");
                let status = made.http_status.expect("a status");
                let read = classify(
                    "CreatePodIdentityAssociation",
                    &eks_generic(code, message, status),
                );
                assert_eq!(
                    (made.class, made.throttled),
                    (read.class, read.throttled),
                    "{code}: {message}"
                );
            }
        }
        for local in ["Timeout", "DispatchFailure"] {
            assert_eq!(code_class(local, ""), (ErrorClass::Transient, None, false));
        }
        assert_eq!(
            code_class("ThrottlingException", ""),
            (ErrorClass::Transient, Some(429), true)
        );
        assert_eq!(
            code_class("SomethingNew", ""),
            (ErrorClass::UserInput, Some(400), false)
        );
    }

    #[test]
    fn unknown_codes_and_missing_codes_go_by_http_status() {
        use ErrorClass::*;
        for (status, class, throttled) in [
            (500, Transient, false),
            (502, Transient, false),
            (503, Transient, false),
            (429, Transient, true),
            (403, AccessDenied, false),
            (404, NotFound, false),
            (409, Conflict, false),
            (400, UserInput, false),
        ] {
            let coded = classify("Op", &iam_generic("SomethingNew", status));
            assert_eq!(
                (coded.class, coded.throttled),
                (class, throttled),
                "{status}"
            );
            let uncoded: SdkError<CreateRoleError, HttpResponse> = SdkError::service_error(
                CreateRoleError::generic(ErrorMetadata::builder().build()),
                raw(status, None),
            );
            let e = classify("Op", &uncoded);
            assert_eq!((e.class, e.throttled), (class, throttled), "{status}");
            assert_eq!(e.code, format!("Http{status}"));
        }
    }

    #[test]
    fn unreadable_answers_go_by_http_status() {
        let bad_gateway: SdkError<CreateRoleError, HttpResponse> =
            SdkError::response_error("not XML", raw(502, Some("gw-1")));
        let e = classify("CreateRole", &bad_gateway);
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.code, "ResponseError");
        assert_eq!(e.http_status, Some(502));
        assert_eq!(e.request_id.as_deref(), Some("gw-1"));
        let garbled_ok: SdkError<CreateRoleError, HttpResponse> =
            SdkError::response_error("truncated", raw(200, None));
        assert_eq!(
            classify("CreateRole", &garbled_ok).class,
            ErrorClass::Transient
        );
    }

    #[test]
    fn request_id_of_a_query_error_body_without_header() {
        let body = r#"<ErrorResponse><Error><Code>NoSuchEntity</Code></Error><RequestId>moto-7</RequestId></ErrorResponse>"#;
        let raw = HttpResponse::new(
            StatusCode::try_from(404).expect("valid status"),
            SdkBody::from(body),
        );
        let err = SdkError::service_error(
            CreateRoleError::generic(eks_meta("NoSuchEntity", "Role r not found")),
            raw,
        );
        assert_eq!(
            classify("GetRole", &err).request_id.as_deref(),
            Some("moto-7")
        );
    }

    #[test]
    fn code_from_an_xml_body_the_parser_did_not_read() {
        let body = "<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>no</Message>\
                    </Error></Errors></ErrorResponse>";
        let raw = HttpResponse::new(
            StatusCode::try_from(403).expect("valid status"),
            SdkBody::from(body),
        );
        let err = SdkError::service_error(
            CreateRoleError::generic(ErrorMetadata::builder().build()),
            raw,
        );
        let e = classify("CreateRole", &err);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::AccessDenied, "AccessDenied")
        );
    }

    #[test]
    fn timeouts_and_dispatch_failures_are_transient() {
        let timeout: SdkError<CreateRoleError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        let e = classify("CreateRole", &timeout);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "Timeout")
        );
        assert_eq!(e.request_id, None);

        let refused: SdkError<CreateRoleError, HttpResponse> = SdkError::dispatch_failure(
            ConnectorError::io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()),
        );
        let e = classify("CreateRole", &refused);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "DispatchFailure")
        );

        let connect_timeout: SdkError<CreateRoleError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timed out".into()));
        assert_eq!(classify("CreateRole", &connect_timeout).code, "Timeout");
    }

    #[test]
    fn credential_failures_are_recognised_through_the_error_chain() {
        let missing: SdkError<CreateRoleError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(
                CredentialsError::not_loaded("no providers in chain").into(),
                None,
            ));
        let e = classify("CreateRole", &missing);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::AccessDenied, "CredentialsNotLoaded")
        );

        let agent_down: SdkError<CreateRoleError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(
                CredentialsError::provider_error("connection refused").into(),
                None,
            ));
        let e = classify("CreateRole", &agent_down);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::Transient, "CredentialsProviderError")
        );
    }

    #[test]
    fn construction_failures_are_user_input() {
        let err: SdkError<CreateRoleError, HttpResponse> =
            SdkError::construction_failure("role_name was not specified");
        let e = classify("CreateRole", &err);
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::UserInput, "ConstructionFailure")
        );
        assert!(e.message.contains("role_name"), "{}", e.message);
    }

    #[test]
    fn not_found_becomes_none_and_anything_else_stays_an_error() {
        let not_found = classify("GetRole", &iam_generic("NoSuchEntity", 404));
        assert!(matches!(none_if_not_found::<()>(not_found), Ok(None)));
        let denied = classify("GetRole", &iam_generic("AccessDenied", 403));
        let err = none_if_not_found::<()>(denied).expect_err("stays an error");
        assert_eq!(err.aws().map(|e| e.class), Some(ErrorClass::AccessDenied));
    }
}
