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

fn eks_generic(code: &str, message: &str, status: u16) -> SdkError<EksCreateError, HttpResponse> {
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
