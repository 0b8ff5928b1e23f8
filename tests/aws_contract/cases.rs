//! The contract cases. Each is an `async fn(&Backend)`; `all_cases!` lists them.
//!
//! Cases are independent: every role and ServiceAccount name carries a random suffix,
//! and no case assumes an empty account. Every case asserts on every backend: where
//! AWS documents an answer, the simulator (in process and behind its HTTP front) is
//! held to it, and so is a wire server unless `known_differences` records that it
//! answers otherwise, in which case its own answer is asserted.

use std::fmt::Debug;
use std::time::Duration;

use pod_identity_operator::aws::{
    Association, CreateAssociation, CreateRole, Role, Tags, UpdateAssociation,
};
use pod_identity_operator::error::{AwsError, ErrorClass};
use rand::Rng;
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::known_differences::{Server, first_known, known};

/// Names every case, for `contract_suite!` to expand inside a backend module.
macro_rules! all_cases {
    () => {
        $crate::contract_suite!(
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
            describe_cluster_found_and_missing,
            association_lifecycle,
            association_list_filters,
            association_cluster_must_exist,
            association_one_per_service_account,
            association_idempotent_token,
            association_role_must_exist,
            association_cross_account_role_refused,
            association_role_propagation_window,
            association_delete_window_blocks_service_account,
            association_tag_untag,
            association_target_role_and_session_policy,
            association_session_policy_grammar_and_size,
            inline_policy_statement_forms,
            inline_policy_element_formats,
            trust_policy_grammar,
            trust_policy_oidc_provider_must_exist,
            inline_policy_size_limit,
            trust_policy_size_on_create,
            policy_document_characters,
        );
    };
}
pub(crate) use all_cases;

// ---- helpers ----

fn suffix() -> String {
    let mut rng = rand::rng();
    (0..8)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", suffix())
}

fn trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"]
        }]
    })
}

fn inline_doc(bucket: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"],
                       "Resource": [format!("arn:aws:s3:::{bucket}/*")]}]
    })
}

/// A document's size as IAM counts it against its quotas: characters, whitespace not
/// counted ("IAM and AWS STS quotas",
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
fn chars(doc: &Value) -> usize {
    doc.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// `doc` with a condition whose value holds `spaces` spaces, which IAM does not count,
/// and enough other characters to make the document `size` characters long.
fn padded(mut doc: Value, size: usize, spaces: usize) -> Value {
    let overhead = r#","Condition":{"StringEquals":{"aws:PrincipalTag/x":""}}"#.len();
    let filler = size - chars(&doc) - overhead;
    let value = format!("{}{}", "v".repeat(filler), " ".repeat(spaces));
    doc["Statement"][0]["Condition"] = json!({"StringEquals": {"aws:PrincipalTag/x": value}});
    assert_eq!(chars(&doc), size);
    doc
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn role_input(name: &str) -> CreateRole {
    CreateRole {
        name: name.to_owned(),
        path: "/".into(),
        assume_role_policy: trust(),
        ..CreateRole::default()
    }
}

async fn new_role(b: &Backend, prefix: &str) -> Role {
    b.iam
        .create_role(&role_input(&unique(prefix)))
        .await
        .expect("CreateRole")
}

/// Asserts an AWS failure with this code and class, and returns it.
#[track_caller]
fn expect_aws<T: Debug>(
    r: pod_identity_operator::Result<T>,
    code: &str,
    class: ErrorClass,
) -> AwsError {
    match r {
        Err(pod_identity_operator::Error::Aws(e)) => {
            assert_eq!(e.code, code, "{e}");
            assert_eq!(e.class, class, "{e}");
            e
        }
        other => panic!("expected AWS error {code}, got {other:?}"),
    }
}

/// A refusal AWS documents with this code and class: asserted, and returned, where
/// `server` answers as AWS does; where it has the known difference `id`, the server's
/// own answer is asserted instead and `None` returned.
#[track_caller]
fn refusal<T: Debug>(
    server: Server,
    id: &str,
    r: pod_identity_operator::Result<T>,
    code: &str,
    class: ErrorClass,
) -> Option<AwsError> {
    match known(server, id) {
        Some(d) => {
            d.holds(&r, format_args!("AWS answers {code}"));
            None
        }
        None => Some(expect_aws(r, code, class)),
    }
}

fn association_input(b: &Backend, role: &Role, namespace: &str, sa: &str) -> CreateAssociation {
    CreateAssociation {
        cluster_name: b.cluster_name.clone(),
        namespace: namespace.to_owned(),
        service_account: sa.to_owned(),
        role_arn: role.arn.clone(),
        ..CreateAssociation::default()
    }
}

const PATIENCE: Duration = Duration::from_secs(60);

/// Creates an association, retrying while EKS does not see the role yet (the
/// propagation class); returns it with the number of such refusals.
async fn create_when_visible(b: &Backend, input: &CreateAssociation) -> (Association, u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut refusals = 0;
    loop {
        match b.eks.create_pod_identity_association(input).await {
            Ok(a) => return (a, refusals),
            Err(pod_identity_operator::Error::Aws(e))
                if e.class == ErrorClass::Propagation && tokio::time::Instant::now() < deadline =>
            {
                assert_eq!(e.code, "InvalidParameterException", "{e}");
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("CreatePodIdentityAssociation: {e}"),
        }
    }
}

async fn new_association(b: &Backend, prefix: &str) -> (Role, Association) {
    let role = new_role(b, prefix).await;
    let input = association_input(b, &role, &unique("ns"), &unique("sa"));
    let (a, _) = create_when_visible(b, &input).await;
    (role, a)
}

// ---- IAM roles ----

pub async fn role_create_get_delete(b: &Backend) {
    let name = unique("pi-create");
    let input = CreateRole {
        name: name.clone(),
        path: "/pod-identity/contract/".into(),
        assume_role_policy: trust(),
        description: Some("made by the contract suite".into()),
        max_session_duration: Some(7200),
        permissions_boundary_arn: None,
        tags: tags(&[("podidentity.dev/cluster", "contract"), ("team", "a")]),
    };
    let created = b.iam.create_role(&input).await.expect("CreateRole");
    assert_eq!(created.name, name);
    assert_eq!(
        created.arn,
        format!(
            "arn:aws:iam::{}:role/pod-identity/contract/{name}",
            b.account_id
        )
    );
    assert!(created.role_id.starts_with("AROA"), "{}", created.role_id);

    let got = b
        .iam
        .get_role(&name)
        .await
        .expect("GetRole")
        .expect("role exists");
    assert_eq!(got.arn, created.arn);
    assert_eq!(got.path, "/pod-identity/contract/");
    assert_eq!(
        got.description.as_deref(),
        Some("made by the contract suite")
    );
    assert_eq!(got.max_session_duration, 7200);
    assert!(
        documents_equivalent(&got.assume_role_policy, &trust()),
        "{}",
        got.assume_role_policy
    );
    assert_eq!(got.tags, input.tags);
    assert_eq!(got.permissions_boundary_arn, None);

    b.iam.delete_role(&name).await.expect("DeleteRole");
    assert_eq!(b.iam.get_role(&name).await.expect("GetRole"), None);
    expect_aws(
        b.iam.delete_role(&name).await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
}

pub async fn role_name_limits(b: &Backend) {
    let longest = format!("pi-{}-{}", suffix(), "x".repeat(64 - 12));
    assert_eq!(longest.len(), 64);
    let role = b
        .iam
        .create_role(&role_input(&longest))
        .await
        .expect("64 characters");
    assert_eq!(role.name, longest);
    let symbols = unique("a_b+c=d,e.f@g");
    b.iam
        .create_role(&role_input(&symbols))
        .await
        .expect("every allowed symbol");

    // AWS refuses longer names and other characters with ValidationError (CreateRole:
    // RoleName, 1-64 of [\w+=,.@-]).
    for bad in [
        format!("{longest}y"),
        String::new(),
        unique("has space"),
        unique("has/slash"),
        unique("ünï"),
    ] {
        refusal(
            b.iam_server,
            "role-name-format",
            b.iam.create_role(&role_input(&bad)).await,
            "ValidationError",
            ErrorClass::UserInput,
        );
    }
}

pub async fn role_name_unique_regardless_of_case(b: &Backend) {
    let name = unique("Pi-Case");
    b.iam
        .create_role(&role_input(&name))
        .await
        .expect("CreateRole");
    let e = expect_aws(
        b.iam.create_role(&role_input(&name)).await,
        "EntityAlreadyExists",
        ErrorClass::Conflict,
    );
    assert_eq!(e.http_status, Some(409));
    // IAM names are unique regardless of case, and GetRole finds a role by any case.
    let upper = b.iam.create_role(&role_input(&name.to_uppercase())).await;
    let lower = b.iam.get_role(&name.to_lowercase()).await.expect("GetRole");
    match known(b.iam_server, "role-name-case") {
        None => {
            expect_aws(upper, "EntityAlreadyExists", ErrorClass::Conflict);
            assert_eq!(lower.map(|r| r.name), Some(name));
        }
        Some(d) => {
            d.holds(&upper, "CreateRole of the name in upper case");
            d.holds_that(
                lower.is_none(),
                format_args!("GetRole in lower case found {lower:?}"),
            );
        }
    }
}

pub async fn role_path_rules(b: &Backend) {
    let mut input = role_input(&unique("pi-path"));
    input.path = "/a/b-c/".into();
    let role = b.iam.create_role(&input).await.expect("nested path");
    assert!(
        role.arn.ends_with(&format!(":role/a/b-c/{}", input.name)),
        "{}",
        role.arn
    );
    // AWS: a path is "/" or begins and ends with "/", printable ASCII between, at
    // most 512 characters.
    for bad in ["a/", "/a", "//x y/", &format!("/{}/", "p".repeat(511))] {
        let mut input = role_input(&unique("pi-path"));
        input.path = bad.to_owned();
        refusal(
            b.iam_server,
            "role-path-format",
            b.iam.create_role(&input).await,
            "ValidationError",
            ErrorClass::UserInput,
        );
    }
}

pub async fn role_session_duration_limits(b: &Backend) {
    for ok in [3600, 43200] {
        let mut input = role_input(&unique("pi-session"));
        input.max_session_duration = Some(ok);
        let role = b
            .iam
            .create_role(&input)
            .await
            .expect("within 3600..=43200");
        assert_eq!(role.max_session_duration, ok);
    }
    for bad in [3599, 43201] {
        let mut input = role_input(&unique("pi-session"));
        input.max_session_duration = Some(bad);
        refusal(
            b.iam_server,
            "role-session-duration-range",
            b.iam.create_role(&input).await,
            "ValidationError",
            ErrorClass::UserInput,
        );
    }
    let role = new_role(b, "pi-session").await;
    assert_eq!(role.max_session_duration, 3600, "default");
    refusal(
        b.iam_server,
        "role-session-duration-range",
        b.iam.update_role(&role.name, None, Some(100)).await,
        "ValidationError",
        ErrorClass::UserInput,
    );
}

pub async fn role_update_description_and_duration(b: &Backend) {
    let role = new_role(b, "pi-update").await;
    b.iam
        .update_role(&role.name, Some("first"), Some(7200))
        .await
        .expect("UpdateRole");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.description.as_deref(), Some("first"));
    assert_eq!(got.max_session_duration, 7200);
    // `None` leaves a field as it is.
    b.iam
        .update_role(&role.name, Some("second"), None)
        .await
        .expect("UpdateRole");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.description.as_deref(), Some("second"));
    match known(b.iam_server, "update-role-keeps-duration") {
        None => assert_eq!(got.max_session_duration, 7200),
        Some(d) => d.holds_that(
            got.max_session_duration == 3600,
            format_args!("MaxSessionDuration {}", got.max_session_duration),
        ),
    }
}

pub async fn missing_role_is_no_such_entity(b: &Backend) {
    let name = unique("pi-missing");
    assert_eq!(b.iam.get_role(&name).await.expect("GetRole"), None);
    let nf = ErrorClass::NotFound;
    expect_aws(
        b.iam.update_role(&name, Some("d"), None).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(
        b.iam.update_assume_role_policy(&name, &trust()).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(
        b.iam.tag_role(&name, &tags(&[("k", "v")])).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(b.iam.list_role_tags(&name).await, "NoSuchEntity", nf);
    expect_aws(
        b.iam.list_attached_role_policies(&name).await,
        "NoSuchEntity",
        nf,
    );
    expect_aws(b.iam.list_role_policies(&name).await, "NoSuchEntity", nf);
    expect_aws(
        b.iam.put_role_policy(&name, "p", &inline_doc("b")).await,
        "NoSuchEntity",
        nf,
    );
    let e = expect_aws(b.iam.delete_role(&name).await, "NoSuchEntity", nf);
    assert_eq!(e.http_status, Some(404));
}

// ---- trust policy ----

pub async fn trust_policy_update_reads_back_equivalent(b: &Backend) {
    let role = new_role(b, "pi-trust").await;
    let scoped = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PodIdentity",
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {
                "StringEquals": {
                    "aws:SourceAccount": b.account_id,
                    "aws:RequestTag/kubernetes-namespace": "team-a",
                    "aws:RequestTag/kubernetes-service-account": "app+1 x"
                },
                "ArnEquals": {"aws:RequestTag/eks-cluster-arn": format!(
                    "arn:aws:eks:us-east-1:{}:cluster/{}", b.account_id, b.cluster_name)}
            }
        }]
    });
    b.iam
        .update_assume_role_policy(&role.name, &scoped)
        .await
        .expect("UpdateAssumeRolePolicy");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(
        documents_equivalent(&got.assume_role_policy, &scoped),
        "{}",
        got.assume_role_policy
    );
    assert!(!documents_equivalent(&got.assume_role_policy, &trust()));
}

pub async fn trust_policy_malformed_refused(b: &Backend) {
    let role = new_role(b, "pi-badtrust").await;
    // AWS answers MalformedPolicyDocument (CreateRole, UpdateAssumeRolePolicy); each
    // document with the known difference of a server that accepts it.
    let grammar = "trust-policy-grammar-unchecked";
    let bad = [
        (json!({"Statement": trust()["Statement"].clone()}), grammar),
        (json!({"Version": "2012-10-17"}), grammar),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Permit",
            "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            grammar,
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "sts:AssumeRole"}]}),
            "trust-policy-principal-required",
        ),
        (json!("not an object"), grammar),
    ];
    for (doc, rule) in bad {
        let r = b.iam.update_assume_role_policy(&role.name, &doc).await;
        if !refused_unless(b.iam_server, &[rule], r, "MalformedPolicyDocument", &doc) {
            // The server took it: the role's trust policy back as it was.
            b.iam
                .update_assume_role_policy(&role.name, &trust())
                .await
                .expect("UpdateAssumeRolePolicy");
        }
        let mut input = role_input(&unique("pi-badtrust"));
        input.assume_role_policy = doc;
        refused_unless(
            b.iam_server,
            &["create-role-trust-policy-unchecked", rule],
            b.iam.create_role(&input).await,
            "MalformedPolicyDocument",
            &input.assume_role_policy,
        );
    }
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(
        documents_equivalent(&got.assume_role_policy, &trust()),
        "unchanged"
    );
}

/// A trust policy of exactly `size` characters not counting whitespace, padded with as
/// many spaces, which IAM does not count.
fn trust_of_size(size: usize) -> Value {
    padded(trust(), size, size)
}

pub async fn trust_policy_size_quota(b: &Backend) {
    let role = new_role(b, "pi-bigtrust").await;
    // Whitespace is not counted: 2,048 characters plus as many spaces is accepted.
    b.iam
        .update_assume_role_policy(&role.name, &trust_of_size(2048))
        .await
        .expect("2,048 characters without whitespace");
    // Past ACLSizePerRole AWS answers LimitExceeded.
    let over = refusal(
        b.iam_server,
        "trust-policy-size-quota",
        b.iam
            .update_assume_role_policy(&role.name, &trust_of_size(2049))
            .await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = over {
        assert_eq!(e.message, "Cannot exceed quota for ACLSizePerRole: 2048");
    }
    let mut input = role_input(&unique("pi-bigtrust"));
    input.assume_role_policy = trust_of_size(2049);
    refusal(
        b.iam_server,
        "trust-policy-size-quota",
        b.iam.create_role(&input).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
}

// ---- boundary, managed and inline policies ----

const BOUNDARY: &str = "arn:aws:iam::aws:policy/PowerUserAccess";
const MANAGED: [&str; 11] = [
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSNSReadOnlyAccess",
    "arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonRDSReadOnlyAccess",
    "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonRoute53ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonVPCReadOnlyAccess",
];

pub async fn permissions_boundary_put_delete(b: &Backend) {
    let role = new_role(b, "pi-boundary").await;
    b.iam
        .put_role_permissions_boundary(&role.name, BOUNDARY)
        .await
        .expect("PutRolePermissionsBoundary");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.permissions_boundary_arn.as_deref(), Some(BOUNDARY));
    b.iam
        .delete_role_permissions_boundary(&role.name)
        .await
        .expect("DeleteRolePermissionsBoundary");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.permissions_boundary_arn, None);

    let mut input = role_input(&unique("pi-boundary"));
    input.permissions_boundary_arn = Some(BOUNDARY.into());
    let created = b
        .iam
        .create_role(&input)
        .await
        .expect("CreateRole with boundary");
    assert_eq!(created.permissions_boundary_arn.as_deref(), Some(BOUNDARY));
}

pub async fn managed_policies_attach_detach_list(b: &Backend) {
    let role = new_role(b, "pi-attach").await;
    assert!(
        b.iam
            .list_attached_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    for arn in &MANAGED[..2] {
        b.iam
            .attach_role_policy(&role.name, arn)
            .await
            .expect("AttachRolePolicy");
    }
    // Attaching again changes nothing.
    b.iam
        .attach_role_policy(&role.name, MANAGED[0])
        .await
        .expect("AttachRolePolicy again");
    let mut listed = b.iam.list_attached_role_policies(&role.name).await.unwrap();
    listed.sort_by(|x, y| x.arn.cmp(&y.arn));
    let mut want: Vec<&str> = MANAGED[..2].to_vec();
    want.sort();
    assert_eq!(
        listed.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(),
        want
    );
    for p in &listed {
        assert_eq!(Some(p.name.as_str()), p.arn.rsplit('/').next());
    }
    b.iam
        .detach_role_policy(&role.name, MANAGED[0])
        .await
        .expect("DetachRolePolicy");
    let listed = b.iam.list_attached_role_policies(&role.name).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(),
        [MANAGED[1]]
    );
}

pub async fn managed_policies_quota(b: &Backend) {
    let role = new_role(b, "pi-quota").await;
    for arn in &MANAGED[..10] {
        b.iam
            .attach_role_policy(&role.name, arn)
            .await
            .expect("ten fit");
    }
    let eleventh = refusal(
        b.iam_server,
        "managed-policies-quota",
        b.iam.attach_role_policy(&role.name, MANAGED[10]).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &eleventh {
        assert_eq!(e.message, "Cannot exceed quota for PoliciesPerRole: 10");
    }
    let attached = b
        .iam
        .list_attached_role_policies(&role.name)
        .await
        .unwrap()
        .len();
    assert_eq!(attached, if eleventh.is_some() { 10 } else { 11 });
}

pub async fn managed_policy_missing_or_not_attached(b: &Backend) {
    let role = new_role(b, "pi-nopolicy").await;
    expect_aws(
        b.iam.detach_role_policy(&role.name, MANAGED[0]).await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
    let missing = format!("arn:aws:iam::{}:policy/{}", b.account_id, unique("absent"));
    refusal(
        b.iam_server,
        "attach-missing-policy",
        b.iam.attach_role_policy(&role.name, &missing).await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
}

pub async fn inline_policies_put_get_list_delete(b: &Backend) {
    let role = new_role(b, "pi-inline").await;
    assert!(
        b.iam
            .list_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.iam.get_role_policy(&role.name, "read").await.unwrap(),
        None
    );
    b.iam
        .put_role_policy(&role.name, "read", &inline_doc("one"))
        .await
        .expect("PutRolePolicy");
    b.iam
        .put_role_policy(&role.name, "write", &inline_doc("two"))
        .await
        .expect("PutRolePolicy");
    // Putting a policy of the same name replaces it.
    b.iam
        .put_role_policy(&role.name, "read", &inline_doc("three"))
        .await
        .expect("replace");
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    assert_eq!(names, ["read", "write"]);
    let got = b
        .iam
        .get_role_policy(&role.name, "read")
        .await
        .unwrap()
        .expect("read exists");
    assert!(documents_equivalent(&got, &inline_doc("three")), "{got}");
    assert!(!documents_equivalent(&got, &inline_doc("one")));
    b.iam
        .delete_role_policy(&role.name, "read")
        .await
        .expect("DeleteRolePolicy");
    assert_eq!(
        b.iam.list_role_policies(&role.name).await.unwrap(),
        ["write"]
    );
    assert_eq!(
        b.iam.get_role_policy(&role.name, "read").await.unwrap(),
        None
    );
    expect_aws(
        b.iam.delete_role_policy(&role.name, "read").await,
        "NoSuchEntity",
        ErrorClass::NotFound,
    );
}

pub async fn inline_policy_malformed_refused(b: &Backend) {
    let role = new_role(b, "pi-badinline").await;
    // AWS answers MalformedPolicyDocument; each document with the known difference of
    // a server that accepts it.
    let bad: [(Value, &[&str]); 4] = [
        (
            json!({"Statement": inline_doc("x")["Statement"].clone()}),
            &["policy-version-unchecked"],
        ),
        (json!({"Version": "2012-10-17"}), &[]),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": "*", "Action": "s3:*", "Resource": "*"}]}),
            &["identity-policy-principal"],
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
            &[],
        ),
    ];
    for (doc, rules) in bad {
        let r = b.iam.put_role_policy(&role.name, "bad", &doc).await;
        if !refused_unless(b.iam_server, rules, r, "MalformedPolicyDocument", &doc) {
            b.iam
                .delete_role_policy(&role.name, "bad")
                .await
                .expect("DeleteRolePolicy");
        }
    }
    assert!(
        b.iam
            .list_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An identity policy of `size` characters, whitespace not counted.
fn inline_of_size(size: usize) -> Value {
    let base = inline_doc("");
    let filler = "b".repeat(size - chars(&base));
    let doc = inline_doc(&filler);
    assert_eq!(chars(&doc), size);
    doc
}

pub async fn inline_policies_total_size_quota(b: &Backend) {
    let role = new_role(b, "pi-inlinesize").await;
    b.iam
        .put_role_policy(&role.name, "a", &inline_of_size(6000))
        .await
        .expect("first");
    b.iam
        .put_role_policy(&role.name, "b", &inline_of_size(4240))
        .await
        .expect("to 10,240");
    // Replacing a policy counts its new size, not both.
    b.iam
        .put_role_policy(&role.name, "b", &inline_of_size(4000))
        .await
        .expect("replace");
    // Past 10,240 characters for the role AWS answers LimitExceeded.
    let over = refusal(
        b.iam_server,
        "inline-policies-size-quota",
        b.iam
            .put_role_policy(&role.name, "c", &inline_of_size(300))
            .await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &over {
        assert!(
            e.message
                .starts_with("Maximum policy size of 10240 bytes exceeded for role"),
            "{e}"
        );
    }
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    let want: &[&str] = if over.is_some() {
        &["a", "b"]
    } else {
        &["a", "b", "c"]
    };
    assert_eq!(names, want);
}

// ---- policy grammar and sizes ----
//
// IAM's policy grammar: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html
// and the element pages under
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html.

/// A 2012-10-17 document of one statement.
fn doc_of(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Asserts a refusal with this code, of the user-input class, naming the document.
#[track_caller]
fn refused_as<T: Debug>(r: pod_identity_operator::Result<T>, code: &str, doc: &Value) {
    match r {
        Err(pod_identity_operator::Error::Aws(e)) => {
            assert_eq!(e.code, code, "{doc}: {e}");
            assert_eq!(e.class, ErrorClass::UserInput, "{doc}: {e}");
        }
        other => panic!("{doc}: expected {code}, got {other:?}"),
    }
}

/// A refusal AWS documents with this code (user-input class) for `doc`: true where the
/// backend refused so; false where `server` has one of the known differences `ids`,
/// whose answer is asserted instead.
#[track_caller]
fn refused_unless<T: Debug>(
    server: Server,
    ids: &[&str],
    r: pod_identity_operator::Result<T>,
    code: &str,
    doc: &Value,
) -> bool {
    match first_known(server, ids) {
        Some(d) => {
            d.holds(&r, doc);
            false
        }
        None => {
            refused_as(r, code, doc);
            true
        }
    }
}

/// Puts each document as an inline policy and reads it back.
async fn inline_accepted(b: &Backend, role: &str, docs: &[Value]) {
    for (i, doc) in docs.iter().enumerate() {
        let name = format!("ok{i}");
        b.iam
            .put_role_policy(role, &name, doc)
            .await
            .unwrap_or_else(|e| panic!("{doc}: {e}"));
        let got = b.iam.get_role_policy(role, &name).await.unwrap();
        assert!(
            got.as_ref().is_some_and(|g| documents_equivalent(g, doc)),
            "{doc}: read back {got:?}"
        );
    }
}

/// What every statement needs (Effect, and exactly one of Action/NotAction and of
/// Resource/NotResource in an identity policy), and the forms it may take. moto and
/// ministack enforce the same.
pub async fn inline_policy_statement_forms(b: &Backend) {
    let role = new_role(b, "pi-stmt").await;
    let accepted = [
        // A Deny-only policy.
        doc_of(json!({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})),
        doc_of(json!({"Effect": "Deny", "Action": ["s3:*"],
            "NotResource": ["arn:aws:s3:::keep", "arn:aws:s3:::keep/*"]})),
        // One statement as an object rather than a list.
        json!({"Version": "2012-10-17", "Id": "one",
            "Statement": {"Effect": "Allow", "Action": "sqs:Send*", "Resource": "*"}}),
        doc_of(json!({"Sid": "Tagged1", "Effect": "Allow",
            "Action": ["ec2:Describe*", "ec2:Get?onsoleOutput"], "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:ResourceTag/team": ["a", "b"]},
                "Bool": {"aws:SecureTransport": "true"},
                "ForAnyValue:StringLike": {"aws:TagKeys": "team*"},
                "ArnLikeIfExists": {"aws:SourceArn": "arn:aws:sns:*:*:t"}}})),
    ];
    inline_accepted(b, &role.name, &accepted).await;

    let refused = [
        doc_of(json!({"Action": "s3:GetObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Permit", "Action": "s3:GetObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject"})),
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*",
            "Resource": "*"}),
        ),
        doc_of(json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "NotResource": "arn:aws:s3:::x"})),
    ];
    for doc in &refused {
        refused_as(
            b.iam.put_role_policy(&role.name, "bad", doc).await,
            "MalformedPolicyDocument",
            doc,
        );
    }
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    assert_eq!(names, ["ok0", "ok1", "ok2", "ok3", "ok4"]);
}

/// Version, action, resource, Sid and condition formats.
pub async fn inline_policy_element_formats(b: &Backend) {
    let role = new_role(b, "pi-formats").await;
    let st = json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"});
    let refused = [
        // Permissions policies must be version 2012-10-17 (Version element page;
        // IAM answers "Policy document must be version 2012-10-17 or greater.").
        json!({"Statement": [st.clone()]}),
        json!({"Version": "2008-10-17", "Statement": [st.clone()]}),
        json!({"Version": "2012-10-18", "Statement": [st.clone()]}),
        // Actions are `service:action` (Action element page).
        doc_of(json!({"Effect": "Allow", "Action": "GetObject", "Resource": "*"})),
        doc_of(json!({"Effect": "Allow", "Action": "s3:Get:Object", "Resource": "*"})),
        // Resources are ARNs or `*` (Resource element page).
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "my-bucket"})),
        // Sids are unique within a policy (Sid element page).
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Same", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            {"Sid": "Same", "Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}]}),
        // Condition operators are the documented ones, their values strings or lists
        // (condition operators page).
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Condition": {"StringSortOf": {"aws:username": "a"}}}),
        ),
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Condition": {"StringEquals": {"aws:username": {"nested": "a"}}}}),
        ),
        doc_of(
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
            "Effects": "Allow"}),
        ),
    ];
    // The first three are about the Version, the rest about the other elements.
    for (i, doc) in refused.iter().enumerate() {
        let rule = if i < 3 {
            "policy-version-unchecked"
        } else {
            "identity-policy-elements-unchecked"
        };
        refused_or_removed(b, &role.name, &[rule], doc).await;
    }
    // A Principal in an identity-based policy (Principal element page: "You cannot
    // use the Principal element in an identity-based policy"), and a Sid of other than
    // ASCII letters and digits (Sid element page).
    for (doc, rule) in [
        (
            doc_of(
                json!({"Effect": "Allow", "Principal": {"AWS": "111122223333"},
                "Action": "s3:GetObject", "Resource": "*"}),
            ),
            "identity-policy-principal",
        ),
        (
            doc_of(
                json!({"Sid": "not-alnum", "Effect": "Allow", "Action": "s3:GetObject",
                "Resource": "*"}),
            ),
            "sid-format",
        ),
    ] {
        refused_or_removed(b, &role.name, &[rule], &doc).await;
    }
    assert!(
        b.iam
            .list_role_policies(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    // Numbers and booleans as condition values, which the grammar allows unquoted
    // ("Quotation marks are optional for numeric and Boolean values").
    let numeric = doc_of(json!({"Effect": "Allow", "Action": "s3:ListBucket",
        "Resource": "*", "Condition": {"NumericLessThanEquals": {"s3:max-keys": 10},
                                       "Bool": {"aws:SecureTransport": true}}}));
    match known(b.iam_server, "numeric-condition-values") {
        None => inline_accepted(b, &role.name, &[numeric]).await,
        Some(d) => d.holds(
            &b.iam.put_role_policy(&role.name, "numeric", &numeric).await,
            &numeric,
        ),
    }
}

/// Puts `doc` as the inline policy `bad` of `role`: refused as MalformedPolicyDocument,
/// or, where the server has one of the known differences `ids`, answered as that says,
/// and the policy deleted again if it was taken.
async fn refused_or_removed(b: &Backend, role: &str, ids: &[&str], doc: &Value) {
    let r = b.iam.put_role_policy(role, "bad", doc).await;
    let taken = r.is_ok();
    if !refused_unless(b.iam_server, ids, r, "MalformedPolicyDocument", doc) && taken {
        b.iam
            .delete_role_policy(role, "bad")
            .await
            .expect("DeleteRolePolicy");
    }
}

/// A trust policy names a principal and no resource (Principal element page; the
/// trust policy section of the IAM roles terms page).
pub async fn trust_policy_grammar(b: &Backend) {
    let role = new_role(b, "pi-trustgrammar").await;
    let accepted = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{}:root", b.account_id)},
         "Action": "sts:AssumeRole"},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]});
    b.iam
        .update_assume_role_policy(&role.name, &accepted)
        .await
        .expect("Allow and Deny statements with principals");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(documents_equivalent(&got.assume_role_policy, &accepted));

    let svc = json!({"Service": "pods.eks.amazonaws.com"});
    let refused = [
        doc_of(
            json!({"Effect": "Allow", "Principal": svc, "Action": "sts:AssumeRole",
            "Resource": "*"}),
        ),
        doc_of(json!({"Effect": "Allow", "Principal": svc, "Action": "s3:GetObject"})),
        doc_of(json!({"Principal": svc, "Action": "sts:AssumeRole"})),
    ];
    // And NotPrincipal in a role trust policy (NotPrincipal element page: "You cannot
    // use the NotPrincipal element in an IAM identity-based policy nor in an IAM role
    // trust policy"), a statement without a principal, and principal types other than
    // AWS, Service, Federated and CanonicalUser (grammar page).
    let more = [
        (
            doc_of(json!({"Effect": "Allow", "NotPrincipal": svc, "Action": "sts:AssumeRole"})),
            "trust-policy-not-principal",
        ),
        (
            doc_of(json!({"Effect": "Allow", "Action": "sts:AssumeRole"})),
            "trust-policy-principal-required",
        ),
        (
            doc_of(json!({"Effect": "Allow", "Principal": {"Pod": "x"},
                "Action": "sts:AssumeRole"})),
            "trust-policy-principal-type",
        ),
    ];
    let all = refused
        .iter()
        .map(|doc| (doc, "trust-policy-grammar-unchecked"))
        .chain(more.iter().map(|(doc, rule)| (doc, *rule)));
    for (doc, rule) in all {
        let r = b.iam.update_assume_role_policy(&role.name, doc).await;
        if !refused_unless(b.iam_server, &[rule], r, "MalformedPolicyDocument", doc) {
            // The server took it: the accepted document back in place.
            b.iam
                .update_assume_role_policy(&role.name, &accepted)
                .await
                .expect("UpdateAssumeRolePolicy");
        }
        let mut input = role_input(&unique("pi-trustgrammar"));
        input.assume_role_policy = doc.clone();
        refused_unless(
            b.iam_server,
            &["create-role-trust-policy-unchecked", rule],
            b.iam.create_role(&input).await,
            "MalformedPolicyDocument",
            doc,
        );
    }
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(
        documents_equivalent(&got.assume_role_policy, &accepted),
        "unchanged"
    );
}

/// A trust policy whose `Federated` principal names an IAM OIDC provider the account
/// does not have (an IRSA trust policy of a cluster whose provider was never created)
/// is refused: MalformedPolicyDocument "Invalid principal in policy" (CreateRole and
/// UpdateAssumeRolePolicy).
pub async fn trust_policy_oidc_provider_must_exist(b: &Backend) {
    let provider = format!(
        "arn:aws:iam::{}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/{}",
        b.account_id,
        suffix().to_uppercase()
    );
    let irsa = doc_of(
        json!({"Effect": "Allow", "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity"}),
    );
    let rule = &["trust-policy-oidc-provider"][..];
    let mut input = role_input(&unique("pi-irsa"));
    input.assume_role_policy = irsa.clone();
    let r = b.iam.create_role(&input).await;
    if let Err(e) = &r {
        assert!(
            e.aws()
                .is_some_and(|a| a.message.starts_with("Invalid principal in policy")),
            "{e}"
        );
    }
    refused_unless(b.iam_server, rule, r, "MalformedPolicyDocument", &irsa);
    let role = new_role(b, "pi-irsa").await;
    let r = b.iam.update_assume_role_policy(&role.name, &irsa).await;
    refused_unless(b.iam_server, rule, r, "MalformedPolicyDocument", &irsa);
}

/// One inline policy alone at the 10,240-character role total, whitespace not counted
/// ("Role policy size cannot exceed 10,240 characters", IAM quotas page).
pub async fn inline_policy_size_limit(b: &Backend) {
    let role = new_role(b, "pi-inlinelimit").await;
    // 10,240 characters and 2,000 spaces: accepted, the spaces are not counted.
    let at_limit = padded(inline_doc("x"), 10240, 2000);
    assert!(at_limit.to_string().chars().count() > 12000);
    b.iam
        .put_role_policy(&role.name, "big", &at_limit)
        .await
        .expect("10,240 characters without whitespace");
    b.iam
        .put_role_policy(&role.name, "big", &padded(inline_doc("x"), 10239, 0))
        .await
        .expect("just under");
    // Past the limit AWS answers LimitExceeded.
    let over = padded(inline_doc("x"), 10241, 0);
    let refused = refusal(
        b.iam_server,
        "inline-policies-size-quota",
        b.iam.put_role_policy(&role.name, "other", &over).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &refused {
        assert!(
            e.message
                .starts_with("Maximum policy size of 10240 bytes exceeded for role"),
            "{e}"
        );
    } else {
        b.iam
            .delete_role_policy(&role.name, "other")
            .await
            .expect("DeleteRolePolicy");
    }
    // Alone too: replacing the only policy with one over the limit.
    refusal(
        b.iam_server,
        "inline-policies-size-quota",
        b.iam.put_role_policy(&role.name, "big", &over).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    assert_eq!(b.iam.list_role_policies(&role.name).await.unwrap(), ["big"]);
}

/// CreateRole with a trust policy just under, at and just over the 2,048-character
/// quota (`ACLSizePerRole`, IAM quotas page), whitespace not counted.
pub async fn trust_policy_size_on_create(b: &Backend) {
    for (size, spaces) in [(2047, 0), (2048, 3000)] {
        let mut input = role_input(&unique("pi-trustsize"));
        input.assume_role_policy = padded(trust(), size, spaces);
        let role = b
            .iam
            .create_role(&input)
            .await
            .unwrap_or_else(|e| panic!("{size} characters: {e}"));
        let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
        assert!(documents_equivalent(
            &got.assume_role_policy,
            &input.assume_role_policy
        ));
    }
    let mut input = role_input(&unique("pi-trustsize"));
    input.assume_role_policy = padded(trust(), 2049, 0);
    let refused = refusal(
        b.iam_server,
        "trust-policy-size-quota",
        b.iam.create_role(&input).await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    if let Some(e) = &refused {
        assert_eq!(e.message, "Cannot exceed quota for ACLSizePerRole: 2048");
    }
    let made = b.iam.get_role(&input.name).await.unwrap();
    assert_eq!(made.is_some(), refused.is_none(), "{made:?}");
}

/// Policy documents hold only tab, line feed, carriage return and U+0020 to U+00FF
/// ("IAM name requirements", IAM quotas page; the `PolicyDocument` pattern of the IAM
/// API reference); anything else is refused as a ValidationError.
pub async fn policy_document_characters(b: &Backend) {
    let mut latin1 = trust();
    latin1["Statement"][0]["Condition"] =
        json!({"StringEquals": {"aws:PrincipalTag/x": "café crème"}});
    let mut input = role_input(&unique("pi-chars"));
    input.assume_role_policy = latin1.clone();
    let role = b.iam.create_role(&input).await.expect("Latin-1 characters");
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(documents_equivalent(&got.assume_role_policy, &latin1));
    let mut inline = inline_doc("café");
    inline_accepted(b, &role.name, std::slice::from_ref(&inline)).await;
    let rule = &["policy-document-characters"][..];
    let mut beyond = latin1.clone();
    beyond["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalTag/x"] = json!("Łódź");
    let r = b.iam.update_assume_role_policy(&role.name, &beyond).await;
    refused_unless(b.iam_server, rule, r, "ValidationError", &beyond);
    let mut create = role_input(&unique("pi-chars"));
    create.assume_role_policy = beyond.clone();
    let r = b.iam.create_role(&create).await;
    refused_unless(b.iam_server, rule, r, "ValidationError", &beyond);
    inline["Statement"][0]["Resource"] = json!(["arn:aws:s3:::bucket-€/*"]);
    let r = b.iam.put_role_policy(&role.name, "euro", &inline).await;
    let mut want = vec!["ok0"];
    if !refused_unless(b.iam_server, rule, r, "ValidationError", &inline) {
        want.insert(0, "euro");
    }
    let mut names = b.iam.list_role_policies(&role.name).await.unwrap();
    names.sort();
    assert_eq!(names, want);
}

// ---- role tags ----

pub async fn role_tags_tag_untag_list(b: &Backend) {
    let mut input = role_input(&unique("pi-tags"));
    input.tags = tags(&[("a", "1")]);
    let role = b.iam.create_role(&input).await.unwrap();
    b.iam
        .tag_role(&role.name, &tags(&[("b", "2"), ("a", "changed")]))
        .await
        .expect("TagRole");
    assert_eq!(
        b.iam.list_role_tags(&role.name).await.unwrap(),
        tags(&[("a", "changed"), ("b", "2")])
    );
    b.iam
        .untag_role(&role.name, &["a".to_owned(), "absent".to_owned()])
        .await
        .expect("UntagRole");
    assert_eq!(
        b.iam.list_role_tags(&role.name).await.unwrap(),
        tags(&[("b", "2")])
    );
    let got = b.iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(got.tags, tags(&[("b", "2")]));
}

pub async fn role_tag_limits(b: &Backend) {
    let role = new_role(b, "pi-taglimits").await;
    let key128 = "k".repeat(128);
    let value256 = "v".repeat(256);
    b.iam
        .tag_role(&role.name, &tags(&[(&key128, &value256)]))
        .await
        .expect("at the limits");
    let key129 = "k".repeat(129);
    let value257 = "v".repeat(257);
    let ui = ErrorClass::UserInput;
    for over in [tags(&[(&key129, "v")]), tags(&[("k", &value257)])] {
        refusal(
            b.iam_server,
            "role-tag-rules",
            b.iam.tag_role(&role.name, &over).await,
            "ValidationError",
            ui,
        );
    }
    let fifty_one: Tags = (0..51).map(|i| (format!("t{i}"), "v".to_owned())).collect();
    let r = b.iam.tag_role(&role.name, &fifty_one).await;
    match known(b.iam_server, "role-tag-rules") {
        Some(d) => d.holds(&r, "51 tags in one request"),
        None => {
            let e = r.expect_err("51 tags");
            let e = e.aws().expect("an AWS error");
            assert!(
                matches!(e.code.as_str(), "LimitExceeded" | "ValidationError"),
                "{e}"
            );
        }
    }
    // 49 more make 50 with the one already there.
    let forty_nine: Tags = (0..49).map(|i| (format!("t{i}"), "v".to_owned())).collect();
    b.iam
        .tag_role(&role.name, &forty_nine)
        .await
        .expect("50 in all");
    let one_more = refusal(
        b.iam_server,
        "role-tags-quota",
        b.iam
            .tag_role(&role.name, &tags(&[("one-more", "v")]))
            .await,
        "LimitExceeded",
        ErrorClass::Quota,
    );
    let held = b.iam.list_role_tags(&role.name).await.unwrap().len();
    match one_more {
        Some(_) => assert_eq!(held, 50),
        None => assert!(held > 50, "{held} tags"),
    }
}

// ---- delete ----

pub async fn delete_role_conflicts_while_policies_remain(b: &Backend) {
    let role = new_role(b, "pi-delete").await;
    b.iam
        .attach_role_policy(&role.name, MANAGED[0])
        .await
        .unwrap();
    b.iam
        .put_role_policy(&role.name, "inline", &inline_doc("x"))
        .await
        .unwrap();
    let e = expect_aws(
        b.iam.delete_role(&role.name).await,
        "DeleteConflict",
        ErrorClass::Conflict,
    );
    assert_eq!(e.http_status, Some(409));
    b.iam
        .detach_role_policy(&role.name, MANAGED[0])
        .await
        .unwrap();
    expect_aws(
        b.iam.delete_role(&role.name).await,
        "DeleteConflict",
        ErrorClass::Conflict,
    );
    b.iam
        .delete_role_policy(&role.name, "inline")
        .await
        .unwrap();
    // A permissions boundary does not hold a role.
    b.iam
        .put_role_permissions_boundary(&role.name, BOUNDARY)
        .await
        .unwrap();
    b.iam
        .delete_role(&role.name)
        .await
        .expect("DeleteRole once nothing holds it");
    assert_eq!(b.iam.get_role(&role.name).await.unwrap(), None);
}

pub async fn instance_profiles_listed_for_role(b: &Backend) {
    let role = new_role(b, "pi-profiles").await;
    assert!(
        b.iam
            .list_instance_profiles_for_role(&role.name)
            .await
            .unwrap()
            .is_empty()
    );
    let absent = b
        .iam
        .list_instance_profiles_for_role(&unique("pi-absent"))
        .await;
    match known(b.iam_server, "list-instance-profiles-missing-role") {
        None => {
            expect_aws(absent, "NoSuchEntity", ErrorClass::NotFound);
        }
        Some(d) => d.holds_that(
            absent.as_ref().is_ok_and(|l| l.is_empty()),
            format_args!("{absent:?}"),
        ),
    }
}

// ---- EKS ----

pub async fn describe_cluster_found_and_missing(b: &Backend) {
    let c = b
        .eks
        .describe_cluster(&b.cluster_name)
        .await
        .expect("DescribeCluster")
        .expect("exists");
    assert_eq!(c.name, b.cluster_name);
    assert_eq!(c.account_id, b.account_id);
    assert!(c.arn.starts_with("arn:aws:eks:"), "{}", c.arn);
    assert!(
        c.arn
            .ends_with(&format!(":{}:cluster/{}", b.account_id, b.cluster_name)),
        "{}",
        c.arn
    );
    assert_eq!(
        b.eks
            .describe_cluster(&unique("absent"))
            .await
            .expect("DescribeCluster"),
        None
    );
}

fn assert_id_and_arn(b: &Backend, a: &Association) {
    let id = a
        .association_id
        .strip_prefix("a-")
        .expect("id starts with a-");
    match known(b.eks_server, "association-id-format") {
        None => assert_eq!(id.len(), 17, "{}", a.association_id),
        Some(d) => d.holds_that(
            id.len() == 16 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            &a.association_id,
        ),
    }
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{}",
        a.association_id
    );
    let arn_tail = format!(
        ":{}:podidentityassociation/{}/{}",
        b.account_id, b.cluster_name, a.association_id
    );
    assert!(
        a.association_arn.starts_with("arn:aws:eks:"),
        "{}",
        a.association_arn
    );
    assert!(
        a.association_arn.ends_with(&arn_tail),
        "{}",
        a.association_arn
    );
}

pub async fn association_lifecycle(b: &Backend) {
    let role = new_role(b, "pi-assoc").await;
    let other = new_role(b, "pi-assoc2").await;
    let (ns, sa) = (unique("ns"), unique("sa"));
    let mut input = association_input(b, &role, &ns, &sa);
    input.tags = tags(&[("podidentity.dev/name", "app")]);
    let (created, _) = create_when_visible(b, &input).await;
    assert_id_and_arn(b, &created);
    assert_eq!(created.cluster_name, b.cluster_name);
    assert_eq!(
        (created.namespace.as_str(), created.service_account.as_str()),
        (ns.as_str(), sa.as_str())
    );
    assert_eq!(created.role_arn, role.arn);
    assert!(!created.disable_session_tags);
    assert_eq!(created.tags, input.tags);

    let described = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &created.association_id)
        .await
        .expect("Describe")
        .expect("exists");
    assert_eq!(described.association_arn, created.association_arn);
    assert_eq!(described.role_arn, role.arn);
    assert_eq!(described.tags, input.tags);
    assert_eq!(described.owner_arn, None);

    // Wait until EKS sees the second role too.
    let update = UpdateAssociation {
        cluster_name: b.cluster_name.clone(),
        association_id: created.association_id.clone(),
        role_arn: Some(other.arn.clone()),
        ..UpdateAssociation::default()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let updated = loop {
        match b.eks.update_pod_identity_association(&update).await {
            Ok(a) => break a,
            Err(e)
                if e.aws().is_some_and(|a| a.class == ErrorClass::Propagation)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("UpdatePodIdentityAssociation: {e}"),
        }
    };
    assert_eq!(updated.role_arn, other.arn);
    assert_eq!(updated.association_id, created.association_id);
    let described = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &created.association_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(described.role_arn, other.arn);

    b.eks
        .delete_pod_identity_association(&b.cluster_name, &created.association_id)
        .await
        .expect("Delete");
    assert_eq!(
        b.eks
            .describe_pod_identity_association(&b.cluster_name, &created.association_id)
            .await
            .expect("Describe"),
        None
    );
    expect_aws(
        b.eks
            .delete_pod_identity_association(&b.cluster_name, &created.association_id)
            .await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
    let missing = UpdateAssociation {
        cluster_name: b.cluster_name.clone(),
        association_id: created.association_id.clone(),
        disable_session_tags: Some(true),
        ..UpdateAssociation::default()
    };
    expect_aws(
        b.eks.update_pod_identity_association(&missing).await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
}

pub async fn association_list_filters(b: &Backend) {
    let role = new_role(b, "pi-list").await;
    let ns = unique("ns");
    let (sa1, sa2) = (unique("sa"), unique("sa"));
    let (a1, _) = create_when_visible(b, &association_input(b, &role, &ns, &sa1)).await;
    let (a2, _) = create_when_visible(b, &association_input(b, &role, &ns, &sa2)).await;
    let (a3, _) = create_when_visible(b, &association_input(b, &role, &unique("ns"), &sa1)).await;

    let in_ns = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, Some(&ns), None)
        .await
        .unwrap();
    let mut ids: Vec<&str> = in_ns.iter().map(|s| s.association_id.as_str()).collect();
    ids.sort();
    let mut want = vec![a1.association_id.as_str(), a2.association_id.as_str()];
    want.sort();
    assert_eq!(ids, want);

    let one = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, Some(&ns), Some(&sa1))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].association_id, a1.association_id);
    assert_eq!(one[0].association_arn, a1.association_arn);
    assert_eq!(
        (one[0].namespace.as_str(), one[0].service_account.as_str()),
        (ns.as_str(), sa1.as_str())
    );
    assert_eq!(one[0].cluster_name, b.cluster_name);

    let all = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, None, None)
        .await
        .unwrap();
    for a in [&a1, &a2, &a3] {
        assert!(
            all.iter().any(|s| s.association_id == a.association_id),
            "{} listed",
            a.association_id
        );
    }
    let none = b
        .eks
        .list_pod_identity_associations(&b.cluster_name, Some(&unique("ns")), None)
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub async fn association_cluster_must_exist(b: &Backend) {
    let role = new_role(b, "pi-nocluster").await;
    let mut input = association_input(b, &role, "default", &unique("sa"));
    input.cluster_name = unique("absent");
    expect_aws(
        b.eks.create_pod_identity_association(&input).await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
    expect_aws(
        b.eks
            .list_pod_identity_associations(&input.cluster_name, None, None)
            .await,
        "ResourceNotFoundException",
        ErrorClass::NotFound,
    );
}

pub async fn association_one_per_service_account(b: &Backend) {
    let role = new_role(b, "pi-dup").await;
    let input = association_input(b, &role, &unique("ns"), &unique("sa"));
    let (first, _) = create_when_visible(b, &input).await;
    let e = expect_aws(
        b.eks.create_pod_identity_association(&input).await,
        "ResourceInUseException",
        ErrorClass::Conflict,
    );
    assert_eq!(e.http_status, Some(409));
    let listed = b
        .eks
        .list_pod_identity_associations(
            &b.cluster_name,
            Some(&input.namespace),
            Some(&input.service_account),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "never two for one ServiceAccount");
    assert_eq!(listed[0].association_id, first.association_id);
}

pub async fn association_idempotent_token(b: &Backend) {
    let role = new_role(b, "pi-token").await;
    let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
    input.client_request_token = Some(uuid::Uuid::new_v4().to_string());
    let (first, _) = create_when_visible(b, &input).await;
    let again = b.eks.create_pod_identity_association(&input).await;
    match known(b.eks_server, "association-client-request-token") {
        None => {
            let again = again.expect("the same token and input answer the same association");
            assert_eq!(again.association_id, first.association_id);
        }
        Some(d) => d.holds(&again, "a repeat with the same token"),
    }
    let listed = b
        .eks
        .list_pod_identity_associations(
            &b.cluster_name,
            Some(&input.namespace),
            Some(&input.service_account),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // A new token for the same ServiceAccount is a second request: refused.
    input.client_request_token = Some(uuid::Uuid::new_v4().to_string());
    expect_aws(
        b.eks.create_pod_identity_association(&input).await,
        "ResourceInUseException",
        ErrorClass::Conflict,
    );
}

pub async fn association_role_must_exist(b: &Backend) {
    // EKS answers InvalidParameterException "Role provided in the request does not
    // exist", which within a window after CreateRole is propagation, not a user error.
    let role_arn = format!("arn:aws:iam::{}:role/{}", b.account_id, unique("pi-never"));
    let input = CreateAssociation {
        cluster_name: b.cluster_name.clone(),
        namespace: unique("ns"),
        service_account: unique("sa"),
        role_arn,
        ..CreateAssociation::default()
    };
    let missing = refusal(
        b.eks_server,
        "association-role-must-exist",
        b.eks.create_pod_identity_association(&input).await,
        "InvalidParameterException",
        ErrorClass::Propagation,
    );
    if let Some(e) = missing {
        assert_eq!(e.message, "Role provided in the request does not exist");
    }
    let mut bad = input.clone();
    bad.service_account = unique("sa");
    bad.role_arn = "not-an-arn".into();
    refusal(
        b.eks_server,
        "association-role-arn-format",
        b.eks.create_pod_identity_association(&bad).await,
        "InvalidParameterException",
        ErrorClass::UserInput,
    );
}

pub async fn association_cross_account_role_refused(b: &Backend) {
    // EKS refuses a role in another account (a target role is the way to reach one).
    let other_account = if b.account_id == "999999999999" {
        "888888888888"
    } else {
        "999999999999"
    };
    let input = CreateAssociation {
        cluster_name: b.cluster_name.clone(),
        namespace: unique("ns"),
        service_account: unique("sa"),
        role_arn: format!("arn:aws:iam::{other_account}:role/elsewhere"),
        ..CreateAssociation::default()
    };
    let refused = refusal(
        b.eks_server,
        "association-cross-account-role",
        b.eks.create_pod_identity_association(&input).await,
        "InvalidParameterException",
        ErrorClass::UserInput,
    );
    if let Some(e) = refused {
        assert_eq!(e.message, "Cross-account pass role is not allowed");
    }
}

pub async fn association_role_propagation_window(b: &Backend) {
    let role = new_role(b, "pi-propagate").await;
    let input = association_input(b, &role, &unique("ns"), &unique("sa"));
    let (a, refusals) = create_when_visible(b, &input).await;
    assert_eq!(a.role_arn, role.arn);
    // The simulator keeps a new role invisible for the window this suite gives it
    // (IAM is eventually consistent, with no fixed window documented); ministack
    // sees it at once.
    if b.eks_server == Server::Simulator {
        assert!(
            refusals > 0,
            "the role was invisible to EKS right after CreateRole"
        );
    } else {
        assert_eq!(refusals, 0, "ministack sees a new role at once");
    }
    let (_, again) = create_when_visible(
        b,
        &association_input(b, &role, &unique("ns"), &unique("sa")),
    )
    .await;
    assert_eq!(again, 0, "once visible, the role stays visible");
}

pub async fn association_delete_window_blocks_service_account(b: &Backend) {
    let (role, first) = new_association(b, "pi-release").await;
    b.eks
        .delete_pod_identity_association(&b.cluster_name, &first.association_id)
        .await
        .unwrap();
    let input = association_input(b, &role, &first.namespace, &first.service_account);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut blocked = 0;
    let second = loop {
        match b.eks.create_pod_identity_association(&input).await {
            Ok(a) => break a,
            Err(e)
                if e.aws().is_some_and(|a| a.code == "ResourceInUseException")
                    && tokio::time::Instant::now() < deadline =>
            {
                blocked += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("CreatePodIdentityAssociation: {e}"),
        }
    };
    assert_ne!(second.association_id, first.association_id);
    // The simulator keeps the ServiceAccount blocked for the release window this
    // suite gives it; ministack releases it at once.
    if b.eks_server == Server::Simulator {
        assert!(
            blocked > 0,
            "the deleted association blocked its ServiceAccount for a while"
        );
    } else {
        assert_eq!(blocked, 0, "ministack releases the ServiceAccount at once");
    }
}

pub async fn association_tag_untag(b: &Backend) {
    let (_, a) = new_association(b, "pi-atags").await;
    let tagged = b
        .eks
        .tag_resource(&a.association_arn, &tags(&[("x", "1"), ("y", "2")]))
        .await;
    let untagged = b
        .eks
        .untag_resource(&a.association_arn, &["x".to_owned()])
        .await;
    let got = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &a.association_id)
        .await
        .unwrap()
        .unwrap();
    // An ARN that names nothing.
    let absent = a
        .association_arn
        .replace(&a.association_id, "a-0000000000000zzzz");
    let absent = b.eks.tag_resource(&absent, &tags(&[("x", "1")])).await;
    match known(b.eks_server, "association-tags") {
        None => {
            tagged.expect("TagResource");
            untagged.expect("UntagResource");
            assert_eq!(got.tags, tags(&[("y", "2")]));
            let e = absent.expect_err("no such association");
            assert_eq!(e.aws().map(|e| e.class), Some(ErrorClass::NotFound), "{e}");
        }
        Some(d) => {
            d.holds(&tagged, "TagResource");
            d.holds(&untagged, "UntagResource");
            d.holds(&absent, "TagResource of an absent association");
            d.holds_that(got.tags.is_empty(), format_args!("tags {:?}", got.tags));
        }
    }
}

pub async fn association_target_role_and_session_policy(b: &Backend) {
    let role = new_role(b, "pi-target").await;
    let target = "arn:aws:iam::999999999999:role/cross-account-target".to_owned();
    let session = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "*"}]});
    let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
    input.target_role_arn = Some(target.clone());
    input.disable_session_tags = true;
    input.session_policy = Some(session.clone());
    let (a, _) = create_when_visible(b, &input).await;
    let got = b
        .eks
        .describe_pod_identity_association(&b.cluster_name, &a.association_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.target_role_arn.as_deref(), Some(target.as_str()));
    assert!(got.disable_session_tags);
    assert!(
        got.session_policy
            .as_ref()
            .is_some_and(|p| documents_equivalent(p, &session))
    );

    // Clear the target role and the session policy, then enable session tags.
    let update = UpdateAssociation {
        cluster_name: b.cluster_name.clone(),
        association_id: a.association_id.clone(),
        target_role_arn: Some(None),
        session_policy: Some(None),
        disable_session_tags: Some(false),
        ..UpdateAssociation::default()
    };
    let updated = b
        .eks
        .update_pod_identity_association(&update)
        .await
        .expect("Update");
    assert!(!updated.disable_session_tags);
    match known(b.eks_server, "association-update-clears") {
        None => {
            assert_eq!(updated.target_role_arn, None);
            assert_eq!(updated.session_policy, None);
        }
        Some(d) => d.holds_that(
            updated.target_role_arn.as_deref() == Some(target.as_str())
                && updated.session_policy.is_some(),
            format_args!("{updated:?}"),
        ),
    }

    // EKS: a session policy needs session tags disabled.
    let mut bad = association_input(b, &role, &unique("ns"), &unique("sa"));
    bad.session_policy = Some(session);
    refusal(
        b.eks_server,
        "association-session-policy-needs-disabled-tags",
        b.eks.create_pod_identity_association(&bad).await,
        "InvalidParameterException",
        ErrorClass::UserInput,
    );
}

/// A session policy is an identity policy (Resource required, no Principal) of at most
/// 2,048 characters (STS's session policy limit,
/// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html, which EKS
/// passes it to; counted without whitespace, as IAM counts policies).
pub async fn association_session_policy_grammar_and_size(b: &Backend) {
    let role = new_role(b, "pi-session").await;
    let deny_only = doc_of(json!({"Effect": "Deny", "Action": "s3:*", "Resource": "*"}));
    let at_limit = padded(
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})),
        2048,
        1000,
    );
    for policy in [deny_only, at_limit] {
        let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
        input.disable_session_tags = true;
        input.session_policy = Some(policy.clone());
        let (a, _) = create_when_visible(b, &input).await;
        assert!(
            a.session_policy
                .as_ref()
                .is_some_and(|p| documents_equivalent(p, &policy)),
            "{policy}"
        );
    }
    // EKS refuses what STS would.
    let refused = [
        padded(
            doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})),
            2049,
            0,
        ),
        doc_of(json!({"Effect": "Allow", "Action": "s3:GetObject"})),
        doc_of(
            json!({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "*"}),
        ),
        json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}),
    ];
    for policy in &refused {
        let mut input = association_input(b, &role, &unique("ns"), &unique("sa"));
        input.disable_session_tags = true;
        input.session_policy = Some(policy.clone());
        refused_unless(
            b.eks_server,
            &["association-session-policy-grammar"],
            b.eks.create_pod_identity_association(&input).await,
            "InvalidParameterException",
            policy,
        );
    }
}

/// Two policy documents say the same: equal once a single value and a one-element list
/// are taken as one, and lists as sets (the forms IAM treats alike). Written here, not
/// borrowed from the operator, so a backend is judged by the suite alone.
pub(crate) fn documents_equivalent(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(list) if list.len() == 1 => canonical(&list[0]),
        Value::Array(list) => {
            let mut items: Vec<Value> = list.iter().map(canonical).collect();
            items.sort_by_key(|i| i.to_string());
            items.dedup();
            Value::Array(items)
        }
        other => other.clone(),
    }
}
