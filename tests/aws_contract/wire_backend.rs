//! The SDK adapters over the wire, with the configuration the operator builds for
//! itself plus an endpoint override and fixed test credentials (`local_config`):
//! - this module: IAM against moto, EKS against ministack, each a fresh server (see
//!   `servers`), every case;
//! - `iam_on_ministack`: the IAM cases with IAM on ministack;
//! - `adapters_on_simulator`: every case against the simulator's HTTP front;
//! - `wire_specific`: what only the wire shows (encodings, paging, errors as the SDK's
//!   deserializers read them, moto checking permissions).

use std::sync::Arc;

use aws_config::SdkConfig;
use pod_identity_operator::aws::config::AwsSettings;
use pod_identity_operator::aws::eks::SdkEks;
use pod_identity_operator::aws::iam::SdkIam;
use pod_identity_operator::aws::local::local_config;

use crate::aws_servers::{self, ACCOUNT_ID, Kind};
use crate::backend::{Backend, Server};

pub const REGION: &str = "us-east-1";
const CLUSTER: &str = "contract";

/// The configuration the adapters get, pointed at one test server.
pub async fn sdk_config(url: &str) -> SdkConfig {
    let settings = AwsSettings {
        region: Some(REGION.into()),
        endpoint_url: Some(url.into()),
        ..AwsSettings::default()
    };
    local_config(settings, "AKIACONTRACTTESTS").await
}

pub async fn start() -> Backend {
    let (moto, ministack) = tokio::join!(
        aws_servers::lease(Kind::Moto),
        aws_servers::lease(Kind::Ministack)
    );
    let iam_config = sdk_config(&moto.url()).await;
    let eks_config = sdk_config(&ministack.url()).await;
    aws_servers::create_eks_cluster(&eks_config, CLUSTER).await;
    Backend {
        iam_server: Server::Moto,
        eks_server: Server::Ministack,
        iam: Arc::new(SdkIam::new(&iam_config)),
        eks: Arc::new(SdkEks::new(&eks_config)),
        cluster_name: CLUSTER.into(),
        account_id: ACCOUNT_ID.into(),
        _guard: Box::new((moto, ministack)),
    }
}

crate::cases::all_cases!();

/// What only the wire can show: the encodings and pagination of the real protocols, and
/// how the SDK's own deserializers feed the error classification.
mod wire_specific {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::cases::documents_equivalent;
    use aws_credential_types::Credentials;
    use axum::Router;
    use axum::http::{HeaderName, HeaderValue, StatusCode};
    use pod_identity_operator::aws::config::config_loader;
    use pod_identity_operator::aws::{CreateRole, EksApi, IamApi};
    use pod_identity_operator::error::ErrorClass;
    use serde_json::{Value, json};

    use super::*;

    /// A trust policy full of characters that URL encoding changes.
    fn awkward_trust_policy(namespace: &str) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "PodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {
                        "aws:RequestTag/kubernetes-namespace": namespace,
                        "aws:RequestTag/kubernetes-service-account": "sa+1=%2F/é \"q\" <x>",
                        "aws:SourceAccount": ACCOUNT_ID
                    },
                    "ArnEquals": {
                        "aws:RequestTag/eks-cluster-arn":
                            format!("arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/c?x=1#y")
                    }
                }
            }]
        })
    }

    async fn policies_round_trip(kind: Kind) {
        let server = aws_servers::lease(kind).await;
        let config = sdk_config(&server.url()).await;
        let iam = SdkIam::new(&config);
        let name = "encoded-trust";
        let trust = awkward_trust_policy("team a&b");
        let created = iam
            .create_role(&CreateRole {
                name: name.into(),
                path: "/pod-identity/contract/".into(),
                assume_role_policy: trust.clone(),
                ..CreateRole::default()
            })
            .await
            .expect("CreateRole");
        assert!(documents_equivalent(&created.assume_role_policy, &trust));

        // On the wire the document is URL-encoded, so not JSON as it stands.
        let wire = aws_sdk_iam::Client::new(&config)
            .get_role()
            .role_name(name)
            .send()
            .await
            .expect("raw GetRole");
        let encoded = wire
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .expect("trust policy on the wire")
            .to_string();
        assert!(encoded.starts_with("%7B"), "{encoded}");
        assert!(serde_json::from_str::<Value>(&encoded).is_err());

        let role = iam.get_role(name).await.expect("GetRole").expect("exists");
        assert!(documents_equivalent(&role.assume_role_policy, &trust));
        assert_eq!(role.assume_role_policy, trust);

        let changed = awkward_trust_policy("other ns %20");
        iam.update_assume_role_policy(name, &changed)
            .await
            .expect("UpdateAssumeRolePolicy");
        let role = iam.get_role(name).await.expect("GetRole").expect("exists");
        assert!(documents_equivalent(&role.assume_role_policy, &changed));
        assert!(!documents_equivalent(&role.assume_role_policy, &trust));

        let inline = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket with space/a+b%/*"}]});
        iam.put_role_policy(name, "inline", &inline)
            .await
            .expect("PutRolePolicy");
        let fetched = iam
            .get_role_policy(name, "inline")
            .await
            .expect("GetRolePolicy")
            .expect("exists");
        assert!(documents_equivalent(&fetched, &inline));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trust_and_inline_policies_round_trip_url_encoding_on_moto() {
        policies_round_trip(Kind::Moto).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trust_and_inline_policies_round_trip_url_encoding_on_ministack() {
        policies_round_trip(Kind::Ministack).await;
    }

    /// moto answers 100 attached policies a page. It also lets a role hold more than
    /// IAM's quota of managed policies (10, raisable to 20), which is what makes a
    /// second page possible here at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attached_policies_are_listed_across_pages_on_moto() {
        let moto = aws_servers::lease(Kind::Moto).await;
        let config = sdk_config(&moto.url()).await;
        let iam = SdkIam::new(&config);
        iam.create_role(&CreateRole {
            name: "many-policies".into(),
            path: "/".into(),
            assume_role_policy: awkward_trust_policy("ns"),
            ..CreateRole::default()
        })
        .await
        .expect("CreateRole");
        let aws_managed = aws_sdk_iam::Client::new(&config)
            .list_policies()
            .scope(aws_sdk_iam::types::PolicyScopeType::Aws)
            .max_items(105)
            .send()
            .await
            .expect("ListPolicies");
        let arns: BTreeSet<String> = aws_managed
            .policies()
            .iter()
            .filter_map(|p| p.arn().map(str::to_string))
            .collect();
        assert_eq!(arns.len(), 105);
        for arn in &arns {
            iam.attach_role_policy("many-policies", arn)
                .await
                .expect("AttachRolePolicy");
        }
        let listed = iam
            .list_attached_role_policies("many-policies")
            .await
            .expect("ListAttachedRolePolicies");
        assert_eq!(listed.len(), 105);
        let listed: BTreeSet<String> = listed.into_iter().map(|p| p.arn).collect();
        assert_eq!(listed, arns);
    }

    /// A role in an instance profile cannot be deleted; the adapter names the profile
    /// that holds it. (The operator never puts roles in instance profiles, so only the
    /// wire cases can set this up, with the SDK client directly.)
    async fn instance_profile_holds_role(kind: Kind) {
        let server = aws_servers::lease(kind).await;
        let config = sdk_config(&server.url()).await;
        let iam = SdkIam::new(&config);
        iam.create_role(&CreateRole {
            name: "held".into(),
            path: "/".into(),
            assume_role_policy: awkward_trust_policy("ns"),
            ..CreateRole::default()
        })
        .await
        .expect("CreateRole");
        let raw = aws_sdk_iam::Client::new(&config);
        raw.create_instance_profile()
            .instance_profile_name("holder")
            .send()
            .await
            .expect("CreateInstanceProfile");
        raw.add_role_to_instance_profile()
            .instance_profile_name("holder")
            .role_name("held")
            .send()
            .await
            .expect("AddRoleToInstanceProfile");
        let err = iam
            .delete_role("held")
            .await
            .expect_err("held by a profile");
        let aws = err.aws().expect("an AWS error");
        assert_eq!(
            (aws.class, aws.code.as_str()),
            (ErrorClass::Conflict, "DeleteConflict")
        );
        assert_eq!(aws.http_status, Some(409));
        assert_eq!(
            iam.list_instance_profiles_for_role("held")
                .await
                .expect("list"),
            ["holder"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instance_profile_holds_role_on_moto() {
        instance_profile_holds_role(Kind::Moto).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instance_profile_holds_role_on_ministack() {
        instance_profile_holds_role(Kind::Ministack).await;
    }

    /// moto checking permissions: a call the caller's policy does not allow, and a call
    /// with keys moto never issued, are both `AccessDenied` class.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_permissions_and_unknown_keys_are_access_denied_on_moto() {
        let moto = aws_servers::lease(Kind::Moto).await;
        let admin = aws_sdk_iam::Client::new(&sdk_config(&moto.url()).await);
        // Three set-up calls go through unchecked; every later one is checked.
        moto.enforce_moto_auth(3).await;
        admin
            .create_user()
            .user_name("reader")
            .send()
            .await
            .expect("CreateUser");
        let key = admin
            .create_access_key()
            .user_name("reader")
            .send()
            .await
            .expect("CreateAccessKey");
        let key = key.access_key().expect("a key");
        let only_get_role = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "iam:GetRole", "Resource": "*"}]});
        admin
            .put_user_policy()
            .user_name("reader")
            .policy_name("get-role-only")
            .policy_document(only_get_role.to_string())
            .send()
            .await
            .expect("PutUserPolicy");

        let settings = AwsSettings {
            region: Some(REGION.into()),
            endpoint_url: Some(moto.url()),
            ..AwsSettings::default()
        };
        let reader_config = config_loader(&settings)
            .credentials_provider(Credentials::new(
                key.access_key_id(),
                key.secret_access_key(),
                None,
                None,
                "moto-user",
            ))
            .load()
            .await;
        let reader = SdkIam::new(&reader_config);
        assert_eq!(reader.get_role("absent").await.expect("allowed"), None);
        let err = reader
            .create_role(&CreateRole {
                name: "not-allowed".into(),
                path: "/".into(),
                // Plain characters: with authentication on, moto's signature check
                // disagrees with the SDK's on some of those `awkward_trust_policy` holds.
                assume_role_policy: json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}),
                ..CreateRole::default()
            })
            .await
            .expect_err("CreateRole is not allowed");
        let aws = err.aws().expect("an AWS error");
        assert_eq!(
            (aws.class, aws.code.as_str()),
            (ErrorClass::AccessDenied, "AccessDenied")
        );
        assert_eq!(aws.http_status, Some(403));
        assert!(aws.request_id.is_some());

        let stranger = SdkIam::new(&config_with_attempts(&moto.url(), 1).await);
        let err = stranger.get_role("absent").await.expect_err("unknown key");
        let aws = err.aws().expect("an AWS error");
        assert_eq!(aws.class, ErrorClass::AccessDenied, "{aws}");
        assert_eq!(aws.code, "InvalidClientTokenId");
    }

    /// ministack answers every association in one page, so a scripted EKS answers two
    /// pages here; the adapter must follow `nextToken` and repeat the filters.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn associations_are_listed_across_pages() {
        use std::collections::HashMap;

        use axum::extract::{Path, Query};

        let queries: Arc<std::sync::Mutex<Vec<HashMap<String, String>>>> = Arc::default();
        let seen = queries.clone();
        let row = |id: &str| {
            json!({"clusterName": "c", "namespace": "ns", "serviceAccount": "sa",
                "associationId": id,
                "associationArn": format!("arn:aws:eks:{REGION}:{ACCOUNT_ID}:podidentityassociation/c/{id}"),
                "ownerArn": ""})
        };
        let app = Router::new().route(
            "/clusters/{cluster}/pod-identity-associations",
            axum::routing::get(
                move |Path(cluster): Path<String>, Query(q): Query<HashMap<String, String>>| {
                    seen.lock().expect("not poisoned").push(q.clone());
                    let page = match q.get("nextToken").map(String::as_str) {
                        None => json!({"associations": [row("a-1"), row("a-2")],
                            "nextToken": "page-2"}),
                        Some("page-2") => json!({"associations": [row("a-3")]}),
                        Some(other) => panic!("unexpected token {other}"),
                    };
                    assert_eq!(cluster, "c");
                    async move { axum::Json(page) }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(axum::serve(listener, app).into_future());

        let eks = SdkEks::new(&config_with_attempts(&url, 1).await);
        let rows = eks
            .list_pod_identity_associations("c", Some("ns"), Some("sa"))
            .await
            .expect("ListPodIdentityAssociations");
        let ids: Vec<&str> = rows.iter().map(|r| r.association_id.as_str()).collect();
        assert_eq!(ids, ["a-1", "a-2", "a-3"]);
        assert!(rows.iter().all(|r| r.owner_arn.is_none()));
        let queries = queries.lock().expect("not poisoned").clone();
        assert_eq!(queries.len(), 2);
        for q in &queries {
            assert_eq!(q.get("namespace").map(String::as_str), Some("ns"));
            assert_eq!(q.get("serviceAccount").map(String::as_str), Some("sa"));
        }
    }

    /// An HTTP server giving one fixed answer to every request; counts them.
    async fn canned(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &'static str,
    ) -> (String, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let status = StatusCode::from_u16(status).expect("valid status");
        let headers: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect();
        let app = Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let headers = headers.clone();
            async move {
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                *response.status_mut() = status;
                response.headers_mut().extend(headers);
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(axum::serve(listener, app).into_future());
        (url, count)
    }

    async fn config_with_attempts(url: &str, max_attempts: u32) -> SdkConfig {
        let settings = AwsSettings {
            region: Some(REGION.into()),
            endpoint_url: Some(url.into()),
            max_attempts,
            ..AwsSettings::default()
        };
        local_config(settings, "AKIA").await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn iam_throttling_is_retried_then_classified_with_its_request_id() {
        let (url, count) = canned(
            400,
            &[("content-type", "text/xml")],
            r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>iam-throttle-1</RequestId></ErrorResponse>"#,
        )
        .await;
        let iam = SdkIam::new(&config_with_attempts(&url, 2).await);
        let err = iam.get_role("r").await.expect_err("throttled");
        let aws = err.aws().expect("an AWS error").clone();
        assert_eq!(aws.class, ErrorClass::Transient);
        assert!(aws.throttled);
        assert_eq!(aws.code, "Throttling");
        assert_eq!(aws.operation, "GetRole");
        assert_eq!(aws.http_status, Some(400));
        assert_eq!(aws.request_id.as_deref(), Some("iam-throttle-1"));
        // The SDK's retry mode retried it once before giving up.
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eks_role_not_yet_visible_is_propagation() {
        let (url, count) = canned(
            400,
            &[
                ("content-type", "application/json"),
                ("x-amzn-errortype", "InvalidParameterException"),
                ("x-amzn-requestid", "eks-req-9"),
            ],
            r#"{"message":"Role provided in the request does not exist"}"#,
        )
        .await;
        let eks = SdkEks::new(&config_with_attempts(&url, 3).await);
        let err = eks
            .describe_pod_identity_association("c", "a-1")
            .await
            .expect_err("refused");
        let aws = err.aws().expect("an AWS error");
        assert_eq!(aws.class, ErrorClass::Propagation);
        assert_eq!(aws.code, "InvalidParameterException");
        assert_eq!(aws.request_id.as_deref(), Some("eks-req-9"));
        // Not a retryable error for the SDK: one request only.
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreadable_5xx_and_refused_connections_are_transient() {
        let (url, count) = canned(503, &[], "<html>upstream gone</html>").await;
        let iam = SdkIam::new(&config_with_attempts(&url, 1).await);
        let aws = iam.get_role("r").await.expect_err("503").aws().cloned();
        let aws = aws.expect("an AWS error");
        assert_eq!(aws.class, ErrorClass::Transient);
        assert_eq!(aws.http_status, Some(503));
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", closed.local_addr().expect("address"));
        drop(closed);
        let eks = SdkEks::new(&config_with_attempts(&url, 1).await);
        let aws = eks.describe_cluster("c").await.expect_err("refused");
        let aws = aws.aws().expect("an AWS error");
        assert_eq!(aws.class, ErrorClass::Transient);
        assert_eq!(aws.code, "DispatchFailure");
        assert_eq!(aws.request_id, None);
    }

    /// ministack, like EKS, reports an unset `ownerArn` as an empty string; the adapter
    /// reports it as absent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_wire_fields_are_absent_and_session_policy_is_parsed() {
        let b = start().await;
        let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:ListBucket", "Resource": "*"}]});
        let created = b
            .eks
            .create_pod_identity_association(&pod_identity_operator::aws::CreateAssociation {
                cluster_name: b.cluster_name.clone(),
                namespace: "ns".into(),
                service_account: "sa".into(),
                role_arn: format!("arn:aws:iam::{ACCOUNT_ID}:role/r"),
                disable_session_tags: true,
                session_policy: Some(policy.clone()),
                ..Default::default()
            })
            .await
            .expect("CreatePodIdentityAssociation");
        assert_eq!(created.owner_arn, None);
        assert_eq!(created.target_role_arn, None);
        assert_eq!(created.session_policy, Some(policy.clone()));
        assert!(created.disable_session_tags);
        let described = b
            .eks
            .describe_pod_identity_association(&b.cluster_name, &created.association_id)
            .await
            .expect("Describe")
            .expect("exists");
        assert_eq!(described.session_policy, Some(policy));
        assert!(created.association_arn.contains(&created.association_id));
    }
}

/// The IAM cases again with IAM on ministack, the second IAM implementation (EKS cases
/// already run on ministack above); where ministack answers otherwise than AWS, the
/// cases assert its answer as `known_differences` records it.
pub mod iam_on_ministack {
    use super::*;

    pub async fn start() -> Backend {
        let ministack = aws_servers::lease(Kind::Ministack).await;
        let config = sdk_config(&ministack.url()).await;
        aws_servers::create_eks_cluster(&config, CLUSTER).await;
        Backend {
            iam_server: Server::Ministack,
            eks_server: Server::Ministack,
            iam: Arc::new(SdkIam::new(&config)),
            eks: Arc::new(SdkEks::new(&config)),
            cluster_name: CLUSTER.into(),
            account_id: ACCOUNT_ID.into(),
            _guard: Box::new(ministack),
        }
    }

    crate::contract_suite!(
        role_create_get_delete,
        role_name_limits,
        role_name_unique_regardless_of_case,
        role_path_rules,
        role_session_duration_limits,
        role_update_description_and_duration,
        missing_role_is_no_such_entity,
        trust_policy_update_reads_back_equivalent,
        trust_policy_malformed_refused,
        trust_policy_size_quota,
        permissions_boundary_put_delete,
        managed_policies_attach_detach_list,
        managed_policies_quota,
        managed_policy_missing_or_not_attached,
        inline_policies_put_get_list_delete,
        inline_policy_malformed_refused,
        inline_policies_total_size_quota,
        role_tags_tag_untag_list,
        role_tag_limits,
        delete_role_conflicts_while_policies_remain,
        instance_profiles_listed_for_role,
        inline_policy_statement_forms,
        inline_policy_element_formats,
        trust_policy_grammar,
        trust_policy_oidc_provider_must_exist,
        inline_policy_size_limit,
        trust_policy_size_on_create,
        policy_document_characters,
    );
}

/// Every case again, through the SDK adapters against the simulator's HTTP front: the
/// answers are the simulator's (so as strict as AWS), the path is the real clients,
/// protocols and error classification.
pub mod adapters_on_simulator {
    use pod_identity_operator::aws::sim::{AwsSim, SimConfig, administrator_policy, http};

    use super::*;
    use crate::sim_backend::WINDOW;

    pub async fn start() -> Backend {
        let sim = Arc::new(AwsSim::new(SimConfig {
            role_propagation: WINDOW,
            association_release: WINDOW,
            seed: rand::random(),
            // The contract is the API's: the caller is the account's administrator,
            // so every call still passes through the authorizer and is allowed.
            identity_policy: Some(administrator_policy()),
            ..SimConfig::default()
        }));
        let cluster = sim.add_cluster(CLUSTER);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(http::serve(sim.clone(), listener));
        let config = sdk_config(&url).await;
        Backend {
            iam_server: Server::Simulator,
            eks_server: Server::Simulator,
            iam: Arc::new(SdkIam::new(&config)),
            eks: Arc::new(SdkEks::new(&config)),
            cluster_name: cluster.name,
            account_id: cluster.account_id,
            _guard: Box::new((sim, server)),
        }
    }

    crate::cases::all_cases!();
}
