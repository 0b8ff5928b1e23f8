//! The SDK configuration picks up EKS Pod Identity credentials, the way the operator
//! gets them in a cluster: `AWS_CONTAINER_CREDENTIALS_FULL_URI` names an endpoint that
//! wants the content of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` as its `Authorization`
//! header. The endpoint is served here on 127.0.0.1 (the SDK allows loopback), and the
//! IAM adapter built from the configuration calls moto with what it served.
//!
//! Environment variables are process-wide, so this binary holds this one test, which
//! sets them before any other thread exists.

#[path = "support/aws_servers.rs"]
mod aws_servers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use pod_identity_operator::aws::config::{AwsSettings, load_sdk_config};
use pod_identity_operator::aws::iam::SdkIam;
use pod_identity_operator::aws::{CreateRole, IamApi};
use pod_identity_operator::error::ErrorClass;
use serde_json::json;

const TOKEN: &str = "eks-pod-identity-token-0123456789";
const ACCESS_KEY: &str = "ASIAPODIDENTITYTEST";
const SESSION_TOKEN: &str = "pod-identity-session-token";

/// Authorization headers the credentials endpoint received.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// The credentials endpoint of the EKS Pod Identity agent, as far as the SDK can tell.
fn credentials_endpoint(seen: Seen) -> Router {
    Router::new().route(
        "/v1/credentials",
        get(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                seen.lock().expect("not poisoned").push(auth.clone());
                if auth.as_deref() != Some(TOKEN) {
                    let denied = json!({"code": "AccessDeniedException", "message": "bad token"});
                    return (StatusCode::FORBIDDEN, denied.to_string());
                }
                let expiration = (chrono::Utc::now() + chrono::Duration::hours(6))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let document = json!({
                    "AccessKeyId": ACCESS_KEY,
                    "SecretAccessKey": "pod-identity-secret",
                    "Token": SESSION_TOKEN,
                    "AccountId": aws_servers::ACCOUNT_ID,
                    "Expiration": expiration,
                });
                (StatusCode::OK, document.to_string())
            }
        }),
    )
}

/// Records the signing headers of every request the IAM client sends.
#[derive(Debug, Clone, Default)]
struct SigningRecorder(Arc<Mutex<Vec<(String, String)>>>);

impl Intercept for SigningRecorder {
    fn name(&self) -> &'static str {
        "SigningRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request().headers();
        let header = |name| headers.get(name).unwrap_or_default().to_string();
        self.0
            .lock()
            .expect("not poisoned")
            .push((header("authorization"), header("x-amz-security-token")));
        Ok(())
    }
}

#[test]
fn pod_identity_container_credentials_sign_the_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, TOKEN).expect("write token file");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind endpoint");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();

    // SAFETY: no other thread exists yet in this single-test binary; the runtime below
    // is built afterwards.
    unsafe {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_CONFIG_FILE", dir.path().join("no-config"));
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-credentials"),
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{port}/v1/credentials"),
        );
        std::env::set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let seen: Seen = Arc::default();
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        tokio::spawn(axum::serve(listener, credentials_endpoint(seen.clone())).into_future());
        let moto = aws_servers::lease(aws_servers::Kind::Moto).await;
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(moto.url()),
            max_attempts: 1,
            ..AwsSettings::default()
        };

        // The standard chain resolves what the endpoint served.
        let config = load_sdk_config(&settings).await.expect("config loads");
        let credentials = config
            .credentials_provider()
            .expect("a credentials provider")
            .provide_credentials()
            .await
            .expect("credentials from the container endpoint");
        assert_eq!(credentials.access_key_id(), ACCESS_KEY);
        assert_eq!(credentials.session_token(), Some(SESSION_TOKEN));
        assert_eq!(
            credentials.account_id().map(|a| a.as_str()),
            Some(aws_servers::ACCOUNT_ID)
        );

        // The adapter's calls to moto are signed with them.
        let recorder = SigningRecorder::default();
        let client = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&config)
                .interceptor(recorder.clone())
                .build(),
        );
        let iam = SdkIam::from_client(client);
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"]}]});
        let created = iam
            .create_role(&CreateRole {
                name: "signed-by-pod-identity".into(),
                path: "/".into(),
                assume_role_policy: trust,
                tags: BTreeMap::from([("k".into(), "v".into())]),
                ..CreateRole::default()
            })
            .await
            .expect("CreateRole on moto");
        assert_eq!(
            created.arn,
            format!(
                "arn:aws:iam::{}:role/signed-by-pod-identity",
                aws_servers::ACCOUNT_ID
            )
        );
        let fetched = iam
            .get_role("signed-by-pod-identity")
            .await
            .expect("GetRole");
        assert_eq!(fetched.map(|r| r.arn), Some(created.arn));
        let signed = recorder.0.lock().expect("not poisoned").clone();
        assert_eq!(signed.len(), 2, "{signed:?}");
        for (authorization, security_token) in &signed {
            assert!(
                authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")),
                "{authorization}"
            );
            assert_eq!(security_token, SESSION_TOKEN);
        }
        let asked = seen.lock().expect("not poisoned").clone();
        assert!(
            !asked.is_empty(),
            "the credentials endpoint was never asked"
        );
        assert!(
            asked.iter().all(|a| a.as_deref() == Some(TOKEN)),
            "{asked:?}"
        );

        // With a token the endpoint refuses, the call fails as a credentials failure.
        std::fs::write(&token_file, "not-the-token").expect("rewrite token file");
        let config = load_sdk_config(&settings).await.expect("config loads");
        let err = SdkIam::new(&config)
            .get_role("signed-by-pod-identity")
            .await
            .expect_err("no credentials, no call");
        let aws = err
            .aws()
            .unwrap_or_else(|| panic!("an AWS error, got {err}"));
        // The agent's refusal may pass (a rotated token is read again next time).
        assert_eq!(
            (aws.class, aws.code.as_str()),
            (ErrorClass::Transient, "CredentialsProviderError"),
            "{aws:?}"
        );
        assert!(
            seen.lock()
                .expect("not poisoned")
                .iter()
                .any(|a| a.as_deref() == Some("not-the-token")),
            "the endpoint saw the new token"
        );
    });
}
