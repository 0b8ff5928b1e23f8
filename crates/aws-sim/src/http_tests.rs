//! The simulator on the wire, spoken to by the real SDK clients.

use std::sync::Arc;

use aws_sdk_eks::error::ProvideErrorMetadata as _;
use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use serde_json::json;

use super::*;
use crate::faults::{Fault, Service};
use pod_identity_aws::{CreateRole, EksApi, IamApi};

struct Clients {
    sim: Arc<AwsSim>,
    iam: aws_sdk_iam::Client,
    eks: aws_sdk_eks::Client,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn start() -> Clients {
    let sim = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    }));
    sim.add_cluster("c1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let sim = sim.clone();
        async move {
            http::serve(sim, listener).await.unwrap();
        }
    });
    let creds = Credentials::new("AKIDSIM", "secret", None, None, "test");
    let iam = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .endpoint_url(&url)
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled())
        .build();
    let eks = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(&url)
        .retry_config(aws_sdk_eks::config::retry::RetryConfig::disabled())
        .build();
    Clients {
        sim,
        iam: aws_sdk_iam::Client::from_conf(iam),
        eks: aws_sdk_eks::Client::from_conf(eks),
        url,
        _server: server,
    }
}

/// A policy as GetRole and GetRolePolicy return it: URL-encoded JSON.
fn decoded(text: &str) -> Value {
    let json = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("not a URL-encoded policy ({e}): {text}"))
}

fn trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "a b+c&d<e>"}}}]})
}

#[tokio::test]
async fn iam_over_the_wire() {
    let c = start().await;
    let tag = aws_sdk_iam::types::Tag::builder()
        .key("team")
        .value("a&b")
        .build()
        .unwrap();
    let created = c
        .iam
        .create_role()
        .role_name("wire")
        .path("/pi/")
        .description("d <1>")
        .max_session_duration(7200)
        .permissions_boundary("arn:aws:iam::aws:policy/PowerUserAccess")
        .assume_role_policy_document(trust().to_string())
        .tags(tag)
        .send()
        .await
        .unwrap();
    let role = created.role().unwrap();
    assert_eq!(role.arn(), "arn:aws:iam::111122223333:role/pi/wire");

    let got = c.iam.get_role().role_name("wire").send().await.unwrap();
    let role = got.role().unwrap();
    assert_eq!(role.path(), "/pi/");
    assert_eq!(role.description(), Some("d <1>"));
    assert_eq!(role.max_session_duration(), Some(7200));
    assert_eq!(
        decoded(role.assume_role_policy_document().unwrap()),
        trust()
    );
    assert_eq!(
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some("arn:aws:iam::aws:policy/PowerUserAccess")
    );
    assert_eq!(role.tags()[0].value(), "a&b");

    let dup = c
        .iam
        .create_role()
        .role_name("WIRE")
        .assume_role_policy_document(trust().to_string())
        .send()
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some("EntityAlreadyExists"));
    let missing = c
        .iam
        .get_role()
        .role_name("absent")
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("NoSuchEntity"));
    let malformed = c
        .iam
        .update_assume_role_policy()
        .role_name("wire")
        .policy_document("{not json")
        .send()
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Some("MalformedPolicyDocument"));

    let inline = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]});
    c.iam
        .put_role_policy()
        .role_name("wire")
        .policy_name("p")
        .policy_document(inline.to_string())
        .send()
        .await
        .unwrap();
    let got = c
        .iam
        .get_role_policy()
        .role_name("wire")
        .policy_name("p")
        .send()
        .await
        .unwrap();
    assert_eq!(decoded(got.policy_document()), inline);
    let names = c
        .iam
        .list_role_policies()
        .role_name("wire")
        .send()
        .await
        .unwrap();
    assert_eq!(names.policy_names(), ["p"]);
    c.iam
        .attach_role_policy()
        .role_name("wire")
        .policy_arn(DEFAULT_MANAGED_POLICIES[0])
        .send()
        .await
        .unwrap();
    let attached = c
        .iam
        .list_attached_role_policies()
        .role_name("wire")
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached.attached_policies()[0].policy_arn(),
        Some(DEFAULT_MANAGED_POLICIES[0])
    );
    c.iam
        .untag_role()
        .role_name("wire")
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let tags = c
        .iam
        .list_role_tags()
        .role_name("wire")
        .send()
        .await
        .unwrap();
    assert!(tags.tags().is_empty());
    c.sim.add_instance_profile("nodes", "wire").unwrap();
    let profiles = c
        .iam
        .list_instance_profiles_for_role()
        .role_name("wire")
        .send()
        .await
        .unwrap();
    assert_eq!(
        profiles.instance_profiles()[0].instance_profile_name(),
        "nodes"
    );
    let conflict = c
        .iam
        .delete_role()
        .role_name("wire")
        .send()
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Some("DeleteConflict"));
    assert_eq!(
        conflict.raw_response().map(|r| r.status().as_u16()),
        Some(409)
    );
}

#[tokio::test]
async fn eks_over_the_wire() {
    let c = start().await;
    let role = c
        .sim
        .create_role(&CreateRole {
            name: "r".into(),
            path: "/".into(),
            assume_role_policy: trust(),
            ..CreateRole::default()
        })
        .await
        .unwrap();
    let cluster = c.eks.describe_cluster().name("c1").send().await.unwrap();
    assert_eq!(
        cluster.cluster().and_then(|c| c.arn()),
        Some("arn:aws:eks:us-east-1:111122223333:cluster/c1")
    );
    let missing = c
        .eks
        .describe_cluster()
        .name("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("ResourceNotFoundException"));

    let session = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:*", "Resource": "*"}]});
    let created = c
        .eks
        .create_pod_identity_association()
        .cluster_name("c1")
        .namespace("ns")
        .service_account("sa")
        .role_arn(&role.arn)
        .target_role_arn("arn:aws:iam::999999999999:role/t")
        .disable_session_tags(true)
        .policy(session.to_string())
        .tags("k", "v")
        .client_request_token("tok")
        .send()
        .await
        .unwrap();
    let a = created.association().unwrap();
    let id = a.association_id().unwrap().to_owned();
    let arn = a.association_arn().unwrap().to_owned();
    assert!(a.external_id().is_some());
    assert!(a.created_at().is_some());
    let again = c
        .eks
        .create_pod_identity_association()
        .cluster_name("c1")
        .namespace("ns")
        .service_account("sa")
        .role_arn(&role.arn)
        .target_role_arn("arn:aws:iam::999999999999:role/t")
        .disable_session_tags(true)
        .policy(session.to_string())
        .tags("k", "v")
        .client_request_token("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.association().and_then(|a| a.association_id()),
        Some(id.as_str())
    );
    let dup = c
        .eks
        .create_pod_identity_association()
        .cluster_name("c1")
        .namespace("ns")
        .service_account("sa")
        .role_arn(&role.arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some("ResourceInUseException"));

    let listed = c
        .eks
        .list_pod_identity_associations()
        .cluster_name("c1")
        .namespace("ns")
        .service_account("sa")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.associations().len(), 1);
    let none = c
        .eks
        .list_pod_identity_associations()
        .cluster_name("c1")
        .namespace("other")
        .send()
        .await
        .unwrap();
    assert!(none.associations().is_empty());

    c.eks
        .tag_resource()
        .resource_arn(&arn)
        .tags("x", "1")
        .send()
        .await
        .unwrap();
    c.eks
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("k")
        .send()
        .await
        .unwrap();
    let updated = c
        .eks
        .update_pod_identity_association()
        .cluster_name("c1")
        .association_id(&id)
        .target_role_arn("")
        .policy("")
        .disable_session_tags(false)
        .send()
        .await
        .unwrap();
    let u = updated.association().unwrap();
    assert_eq!(u.target_role_arn(), None);
    assert_eq!(u.policy(), None);
    assert_eq!(u.disable_session_tags(), Some(false));
    let described = c
        .eks
        .describe_pod_identity_association()
        .cluster_name("c1")
        .association_id(&id)
        .send()
        .await
        .unwrap();
    let tags = described
        .association()
        .and_then(|a| a.tags())
        .cloned()
        .unwrap_or_default();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags.get("x").map(String::as_str), Some("1"));

    c.sim.knobs().fail_next(
        "DeletePodIdentityAssociation",
        Fault::throttling(Service::Eks),
    );
    let throttled = c
        .eks
        .delete_pod_identity_association()
        .cluster_name("c1")
        .association_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(throttled.code(), Some("ThrottlingException"));
    c.eks
        .delete_pod_identity_association()
        .cluster_name("c1")
        .association_id(&id)
        .send()
        .await
        .unwrap();
    let gone = c
        .eks
        .describe_pod_identity_association()
        .cluster_name("c1")
        .association_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some("ResourceNotFoundException"));
    assert!(c.sim.inventory().associations.is_empty());
}

#[tokio::test]
async fn inventory_and_calls_over_http() {
    let c = start().await;
    c.eks.describe_cluster().name("c1").send().await.unwrap();
    let addr = c.url.trim_start_matches("http://").to_owned();
    // A plain HTTP/1.1 GET: the answer has a Content-Length, so the body follows the
    // blank line as is.
    let get = |path: &'static str| {
        let addr = addr.clone();
        async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            conn.write_all(req.as_bytes()).await.unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            serde_json::from_str::<Value>(body).unwrap()
        }
    };
    let inv: Inventory = serde_json::from_value(get("/_sim/inventory").await).unwrap();
    assert_eq!(inv.clusters[0].name, "c1");
    assert_eq!(get("/_sim/calls").await["DescribeCluster"], 1);
}

#[tokio::test]
async fn lists_are_paged_as_aws_pages_them() {
    let c = start().await;
    let role = c
        .sim
        .create_role(&CreateRole {
            name: "r".into(),
            path: "/".into(),
            assume_role_policy: trust(),
            ..CreateRole::default()
        })
        .await
        .unwrap();
    for i in 0..150 {
        let input = pod_identity_aws::CreateAssociation {
            cluster_name: "c1".into(),
            namespace: "ns".into(),
            service_account: format!("sa-{i}"),
            role_arn: role.arn.clone(),
            ..Default::default()
        };
        c.sim.create_pod_identity_association(&input).await.unwrap();
    }
    let first = c
        .eks
        .list_pod_identity_associations()
        .cluster_name("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.associations().len(), 100);
    assert!(first.next_token().is_some());
    let mut ids = std::collections::BTreeSet::new();
    let mut pages = c
        .eks
        .list_pod_identity_associations()
        .cluster_name("c1")
        .max_results(40)
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        count += 1;
        for a in page.associations() {
            ids.insert(a.association_id().unwrap().to_owned());
        }
    }
    assert_eq!((count, ids.len()), (4, 150));

    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "*"}]});
    for i in 0..7 {
        c.sim
            .put_role_policy("r", &format!("p{i}"), &doc)
            .await
            .unwrap();
    }
    let page = c
        .iam
        .list_role_policies()
        .role_name("r")
        .max_items(3)
        .send()
        .await
        .unwrap();
    assert_eq!(page.policy_names().len(), 3);
    assert!(page.is_truncated());
    let names: Vec<String> = c
        .iam
        .list_role_policies()
        .role_name("r")
        .max_items(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|n| n.unwrap())
        .collect();
    assert_eq!(names.len(), 7);
}
