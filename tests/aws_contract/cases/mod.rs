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

mod eks;
mod grammar;
mod policies;
mod roles;

pub use eks::*;
pub use grammar::*;
pub use policies::*;
pub use roles::*;

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

pub(crate) fn tags(pairs: &[(&str, &str)]) -> Tags {
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
    r: pod_identity_operator::aws::Result<T>,
    code: &str,
    class: ErrorClass,
) -> AwsError {
    match r {
        Err(pod_identity_operator::aws::Error::Aws(e)) => {
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
    r: pod_identity_operator::aws::Result<T>,
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
            Err(pod_identity_operator::aws::Error::Aws(e))
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
