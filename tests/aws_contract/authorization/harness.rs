//! Running a case: its set-up as an administrator, its call, and the decision it shows, on
//! the simulator and on moto (as an IAM user holding the table's policy inline);
//! [`cross_check`] runs every case of a table on both.

use aws_credential_types::Credentials;
use pod_identity_operator::aws::config::{AwsSettings, config_loader};
use pod_identity_operator::aws::iam::SdkIam;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateRole, IamApi};
use pod_identity_operator::error::ErrorClass;
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::{Value, json};

use super::moto_partial::MOTO_PARTIAL;
use super::{CLUSTER_TAG, READ_ONLY};
use crate::aws_servers::{self, ACCOUNT_ID, Kind};
use crate::cases::tags;
use crate::wire_backend::{REGION, sdk_config};

/// The IAM user moto authorizes the calls of.
const MOTO_USER: &str = "restricted";

/// The decision on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

/// What an administrator creates before the call.
#[derive(Clone, Debug)]
pub enum Fixture {
    Role {
        name: &'static str,
        path: &'static str,
        tags: &'static [(&'static str, &'static str)],
    },
    Attached {
        role: &'static str,
        policy_arn: &'static str,
    },
    Inline {
        role: &'static str,
        name: &'static str,
    },
    /// A customer-managed policy, by ARN, with [`inline_document`] as its document:
    /// made by each backend's own set-up ([`AwsSim::add_managed_policy`], CreatePolicy
    /// on moto), as [`IamApi`] has no call for it.
    CustomerPolicy(&'static str),
}

/// One call through [`IamApi`], with what it needs.
#[derive(Clone, Debug)]
pub enum Call {
    CreateRole {
        name: &'static str,
        path: &'static str,
        boundary: Option<&'static str>,
        tags: &'static [(&'static str, &'static str)],
    },
    GetRole(&'static str),
    UpdateRole(&'static str),
    UpdateAssumeRolePolicy(&'static str),
    PutRolePermissionsBoundary(&'static str, &'static str),
    DeleteRolePermissionsBoundary(&'static str),
    AttachRolePolicy(&'static str, &'static str),
    DetachRolePolicy(&'static str, &'static str),
    ListAttachedRolePolicies(&'static str),
    PutRolePolicy(&'static str, &'static str),
    GetRolePolicy(&'static str, &'static str),
    DeleteRolePolicy(&'static str, &'static str),
    ListRolePolicies(&'static str),
    TagRole(&'static str, &'static [(&'static str, &'static str)]),
    UntagRole(&'static str, &'static [&'static str]),
    ListRoleTags(&'static str),
    DeleteRole(&'static str),
    ListInstanceProfilesForRole(&'static str),
}

/// One row of a table.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub setup: Vec<Fixture>,
    pub call: Call,
    pub expected: Decision,
}

/// A table: the caller's identity policy and the cases run under it.
pub struct Table {
    pub policy: Value,
    pub cases: Vec<Case>,
}

/// A plain inline policy document (characters moto's signature check agrees on).
fn inline_document() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
}

impl Fixture {
    pub(crate) async fn apply(&self, iam: &dyn IamApi) {
        let done = match self {
            Fixture::Role {
                name,
                path,
                tags: t,
            } => iam
                .create_role(&CreateRole {
                    name: (*name).into(),
                    path: (*path).into(),
                    assume_role_policy: pod_identity_trust_policy(None),
                    tags: tags(t),
                    ..CreateRole::default()
                })
                .await
                .map(|_| ()),
            Fixture::Attached { role, policy_arn } => {
                iam.attach_role_policy(role, policy_arn).await
            }
            Fixture::Inline { role, name } => {
                iam.put_role_policy(role, name, &inline_document()).await
            }
            Fixture::CustomerPolicy(arn) => {
                panic!("{arn}: a customer-managed policy is made by the backend's set-up")
            }
        };
        done.unwrap_or_else(|e| panic!("set-up {self:?}: {e}"));
    }
}

impl Call {
    /// The IAM action the call is authorized as.
    pub fn action(&self) -> &'static str {
        match self {
            Call::CreateRole { .. } => "iam:CreateRole",
            Call::GetRole(_) => "iam:GetRole",
            Call::UpdateRole(_) => "iam:UpdateRole",
            Call::UpdateAssumeRolePolicy(_) => "iam:UpdateAssumeRolePolicy",
            Call::PutRolePermissionsBoundary(..) => "iam:PutRolePermissionsBoundary",
            Call::DeleteRolePermissionsBoundary(_) => "iam:DeleteRolePermissionsBoundary",
            Call::AttachRolePolicy(..) => "iam:AttachRolePolicy",
            Call::DetachRolePolicy(..) => "iam:DetachRolePolicy",
            Call::ListAttachedRolePolicies(_) => "iam:ListAttachedRolePolicies",
            Call::PutRolePolicy(..) => "iam:PutRolePolicy",
            Call::GetRolePolicy(..) => "iam:GetRolePolicy",
            Call::DeleteRolePolicy(..) => "iam:DeleteRolePolicy",
            Call::ListRolePolicies(_) => "iam:ListRolePolicies",
            Call::TagRole(..) => "iam:TagRole",
            Call::UntagRole(..) => "iam:UntagRole",
            Call::ListRoleTags(_) => "iam:ListRoleTags",
            Call::DeleteRole(_) => "iam:DeleteRole",
            Call::ListInstanceProfilesForRole(_) => "iam:ListInstanceProfilesForRole",
        }
    }

    /// The role the call names.
    pub(crate) fn role(&self) -> &'static str {
        match self {
            Call::CreateRole { name, .. } => name,
            Call::GetRole(r)
            | Call::UpdateRole(r)
            | Call::UpdateAssumeRolePolicy(r)
            | Call::PutRolePermissionsBoundary(r, _)
            | Call::DeleteRolePermissionsBoundary(r)
            | Call::AttachRolePolicy(r, _)
            | Call::DetachRolePolicy(r, _)
            | Call::ListAttachedRolePolicies(r)
            | Call::PutRolePolicy(r, _)
            | Call::GetRolePolicy(r, _)
            | Call::DeleteRolePolicy(r, _)
            | Call::ListRolePolicies(r)
            | Call::TagRole(r, _)
            | Call::UntagRole(r, _)
            | Call::ListRoleTags(r)
            | Call::DeleteRole(r)
            | Call::ListInstanceProfilesForRole(r) => r,
        }
    }

    /// The ARN IAM authorizes the call against: the new role's for CreateRole, the
    /// role's as set up (with its path) for the others, `role/<name>` when it does not
    /// exist.
    pub(crate) fn resource(&self, setup: &[Fixture]) -> String {
        let name = self.role();
        let path = match self {
            Call::CreateRole { path, .. } => path,
            _ => setup
                .iter()
                .find_map(|f| match f {
                    Fixture::Role { name: n, path, .. } if *n == name => Some(*path),
                    _ => None,
                })
                .unwrap_or("/"),
        };
        format!("arn:aws:iam::{ACCOUNT_ID}:role{path}{name}")
    }

    pub(crate) async fn run(&self, iam: &dyn IamApi) -> pod_identity_operator::aws::Result<()> {
        match self {
            Call::CreateRole {
                name,
                path,
                boundary,
                tags: t,
            } => iam
                .create_role(&CreateRole {
                    name: (*name).into(),
                    path: (*path).into(),
                    assume_role_policy: pod_identity_trust_policy(None),
                    permissions_boundary_arn: boundary.map(str::to_owned),
                    tags: tags(t),
                    ..CreateRole::default()
                })
                .await
                .map(|_| ()),
            Call::GetRole(r) => iam.get_role(r).await.map(|_| ()),
            Call::UpdateRole(r) => iam.update_role(r, Some("changed"), None).await,
            Call::UpdateAssumeRolePolicy(r) => {
                iam.update_assume_role_policy(r, &pod_identity_trust_policy(None))
                    .await
            }
            Call::PutRolePermissionsBoundary(r, arn) => {
                iam.put_role_permissions_boundary(r, arn).await
            }
            Call::DeleteRolePermissionsBoundary(r) => iam.delete_role_permissions_boundary(r).await,
            Call::AttachRolePolicy(r, arn) => iam.attach_role_policy(r, arn).await,
            Call::DetachRolePolicy(r, arn) => iam.detach_role_policy(r, arn).await,
            Call::ListAttachedRolePolicies(r) => {
                iam.list_attached_role_policies(r).await.map(|_| ())
            }
            Call::PutRolePolicy(r, name) => iam.put_role_policy(r, name, &inline_document()).await,
            Call::GetRolePolicy(r, name) => iam.get_role_policy(r, name).await.map(|_| ()),
            Call::DeleteRolePolicy(r, name) => iam.delete_role_policy(r, name).await,
            Call::ListRolePolicies(r) => iam.list_role_policies(r).await.map(|_| ()),
            Call::TagRole(r, t) => iam.tag_role(r, &tags(t)).await,
            Call::UntagRole(r, keys) => {
                let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
                iam.untag_role(r, &keys).await
            }
            Call::ListRoleTags(r) => iam.list_role_tags(r).await.map(|_| ()),
            Call::DeleteRole(r) => iam.delete_role(r).await,
            Call::ListInstanceProfilesForRole(r) => {
                iam.list_instance_profiles_for_role(r).await.map(|_| ())
            }
        }
    }
}

/// What moto is recorded to decide on `case`: its [`MOTO_PARTIAL`] entry, else the
/// expected decision.
pub(crate) fn moto_decision(case: &Case) -> Decision {
    match MOTO_PARTIAL.iter().find(|(name, _)| *name == case.name) {
        None => case.expected,
        Some((_, what)) if what.starts_with("allows") => Decision::Allowed,
        Some((_, what)) if what.starts_with("denies") => Decision::Denied,
        Some((name, what)) => panic!("MOTO_PARTIAL {name}: starts with neither verb: {what}"),
    }
}

/// The decision a call's result shows; a failure other than a denial means the case is
/// set up wrong, and is reported as such.
fn decided(result: &pod_identity_operator::aws::Result<()>) -> Result<Decision, String> {
    match result {
        Ok(()) => Ok(Decision::Allowed),
        Err(e) => match e.aws() {
            Some(aws) if aws.class == ErrorClass::AccessDenied => Ok(Decision::Denied),
            _ => Err(format!("failed other than by a denial: {e}")),
        },
    }
}

/// Runs the case on a fresh simulator; the problems seen, if any.
async fn on_simulator(policy: &Value, case: &Case) -> Vec<String> {
    let sim = AwsSim::new(SimConfig::default());
    AwsSim::as_admin(async {
        for fixture in &case.setup {
            match fixture {
                Fixture::CustomerPolicy(arn) => sim.add_managed_policy(arn),
                _ => fixture.apply(&sim).await,
            }
        }
    })
    .await;
    sim.enforce(Some(policy));
    let result = case.call.run(&sim).await;
    let mut problems = Vec::new();
    match decided(&result) {
        Err(problem) => problems.push(problem),
        Ok(decision) if decision != case.expected => {
            problems.push(format!("{decision:?}, expected {:?}", case.expected))
        }
        Ok(Decision::Allowed) => {}
        Ok(Decision::Denied) => {
            let e = result.expect_err("denied");
            let aws = e.aws().expect("an AWS error");
            let action = case.call.action();
            let resource = case.call.resource(&case.setup);
            if aws.code != "AccessDenied" {
                problems.push(format!("code {}, expected AccessDenied", aws.code));
            }
            if !aws
                .message
                .contains(&format!("perform: {action} on resource: {resource}"))
            {
                problems.push(format!(
                    "message {:?} does not name {action} on {resource}",
                    aws.message
                ));
            }
        }
    }
    problems
}

/// Runs the case on a fresh moto as the IAM user [`MOTO_USER`] holding `policy`; the
/// problems seen, if any.
async fn on_moto(policy: &Value, case: &Case) -> Vec<String> {
    let moto = aws_servers::lease(Kind::Moto).await;
    let admin_config = sdk_config(&moto.url()).await;
    let admin_raw = aws_sdk_iam::Client::new(&admin_config);
    admin_raw
        .create_user()
        .user_name(MOTO_USER)
        .send()
        .await
        .expect("CreateUser");
    let key = admin_raw
        .create_access_key()
        .user_name(MOTO_USER)
        .send()
        .await
        .expect("CreateAccessKey");
    let key = key.access_key().expect("a key");
    admin_raw
        .put_user_policy()
        .user_name(MOTO_USER)
        .policy_name("identity")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutUserPolicy {policy}: {e:?}"));
    let admin = SdkIam::new(&admin_config);
    for fixture in &case.setup {
        match fixture {
            Fixture::CustomerPolicy(arn) => {
                let name = arn.rsplit('/').next().expect("a policy name");
                let made = admin_raw
                    .create_policy()
                    .policy_name(name)
                    .policy_document(inline_document().to_string())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("CreatePolicy {name}: {e:?}"));
                let made = made.policy().and_then(|p| p.arn());
                assert_eq!(made, Some(*arn), "CreatePolicy {name}");
            }
            _ => fixture.apply(&admin).await,
        }
    }
    // Every call from here on is authenticated and authorized.
    moto.enforce_moto_auth(0).await;

    let settings = AwsSettings {
        region: Some(REGION.into()),
        endpoint_url: Some(moto.url()),
        ..AwsSettings::default()
    };
    let caller_config = config_loader(&settings)
        .credentials_provider(Credentials::new(
            key.access_key_id(),
            key.secret_access_key(),
            None,
            None,
            "moto-user",
        ))
        .load()
        .await;
    let caller = SdkIam::new(&caller_config);
    let result = case.call.run(&caller).await;

    let expected = moto_decision(case);
    let mut problems = Vec::new();
    match decided(&result) {
        Err(problem) => problems.push(problem),
        Ok(decision) if decision != expected => problems.push(format!(
            "{decision:?}, recorded {expected:?}{}",
            if expected == case.expected {
                ""
            } else {
                " (MOTO_PARTIAL)"
            }
        )),
        Ok(Decision::Allowed) => {}
        Ok(Decision::Denied) => {
            let e = result.expect_err("denied");
            let aws = e.aws().expect("an AWS error");
            let message = format!(
                "User: arn:aws:iam::{ACCOUNT_ID}:user/{MOTO_USER} is not authorized to \
                 perform: {}",
                case.call.action()
            );
            if (aws.code.as_str(), aws.http_status) != ("AccessDenied", Some(403)) {
                problems.push(format!(
                    "code {} status {:?}, expected AccessDenied 403",
                    aws.code, aws.http_status
                ));
            }
            if aws.message != message {
                problems.push(format!("message {:?}, expected {message:?}", aws.message));
            }
        }
    }
    problems
}

/// Runs every case under `policy` on the simulator and on moto, and fails listing every
/// case where either does not decide (or deny) as expected or as recorded.
pub async fn cross_check(policy: &Value, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        for problem in on_simulator(policy, case).await {
            failures.push(format!("{} on the simulator: {problem}", case.name));
        }
        for problem in on_moto(policy, case).await {
            failures.push(format!("{} on moto: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The role outside the operator's path a platform team owns: `deploy` at `/`, with
/// ReadOnlyAccess attached and an inline policy `deploy`.
pub(crate) fn deploy() -> Vec<Fixture> {
    vec![
        Fixture::Role {
            name: "deploy",
            path: "/",
            tags: &[],
        },
        Fixture::Attached {
            role: "deploy",
            policy_arn: READ_ONLY,
        },
        Fixture::Inline {
            role: "deploy",
            name: "deploy",
        },
    ]
}

/// A role the operator made for the `prod` cluster.
pub(crate) fn owned(name: &'static str) -> Fixture {
    Fixture::Role {
        name,
        path: "/pod-identity/prod/",
        tags: &[(CLUSTER_TAG, "prod")],
    }
}

pub(crate) fn case(
    name: &'static str,
    setup: Vec<Fixture>,
    call: Call,
    expected: Decision,
) -> Case {
    Case {
        name,
        setup,
        call,
        expected,
    }
}

pub(crate) async fn check(table: Table) {
    cross_check(&table.policy, &table.cases).await;
}
