//! The operator's own IAM permissions for one installation, rendered from its cluster,
//! account and region and the guardrails: the second line of defence, which refuses in
//! IAM what the guardrails should have refused in the operator.
//!
//! Every role statement is limited to the cluster's path `role/pod-identity/<cluster>/`;
//! changes also need the ownership tag `podidentity.dev/cluster=<cluster>` on the role
//! (or in the request, for a new role). Managed policies may be attached only when the
//! guardrails allow them somewhere; a boundary every rule demands is a condition on
//! creating roles, and then never removable; roles are passed only to EKS Pod Identity
//! and only those of the cluster's path or allowed as existing roles; the operator's own
//! role is denied outright.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::aws::Cluster;
use crate::guardrails::GuardrailConfig;
use crate::naming::{self, TAG_CLUSTER};
use crate::policy::{POD_IDENTITY_PRINCIPAL, TrustScope};
use crate::{Error, Result};

/// Where the operator runs: what its permissions are scoped to.
#[derive(Clone, Debug, PartialEq)]
pub struct Installation {
    pub partition: String,
    pub account_id: String,
    pub region: String,
    pub cluster_name: String,
    /// The operator's namespace and ServiceAccount, which its own role's trust admits.
    pub namespace: String,
    pub service_account: String,
    /// The operator's own role: no binding may name it, and the policy denies it.
    pub operator_role_arn: Option<String>,
}

/// Where the shipped manifests run the operator (`config/rbac`, the Helm chart).
pub const OPERATOR_NAMESPACE: &str = "pod-identity-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "pod-identity-operator";

/// IAM's limit of a managed policy, in characters without whitespace (IAM and STS
/// quotas: "Managed policy size").
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;

/// The actions on a role of the cluster's path that only read (tags come with GetRole).
const ROLE_READS: [&str; 5] = [
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
];

/// IAM's partition of a region (`cn-north-1` is `aws-cn`, `us-gov-west-1` `aws-us-gov`).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

impl Installation {
    pub fn new(cluster_name: &str, account_id: &str, region: &str) -> Self {
        Installation {
            partition: partition_of(region).to_owned(),
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            cluster_name: cluster_name.to_owned(),
            namespace: OPERATOR_NAMESPACE.to_owned(),
            service_account: OPERATOR_SERVICE_ACCOUNT.to_owned(),
            operator_role_arn: None,
        }
    }

    /// The installation of a described cluster: partition, region and account come from
    /// its ARN (`arn:<partition>:eks:<region>:<account>:cluster/<name>`).
    pub fn of_cluster(cluster: &Cluster) -> Option<Self> {
        let mut parts = cluster.arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("eks"), Some(region), Some(account)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        Some(Installation {
            partition: partition.to_owned(),
            ..Installation::new(&cluster.name, account, region)
        })
    }

    pub fn with_operator_role(mut self, arn: Option<String>) -> Self {
        self.operator_role_arn = arn;
        self
    }

    pub fn cluster_arn(&self) -> String {
        format!(
            "arn:{}:eks:{}:{}:cluster/{}",
            self.partition, self.region, self.account_id, self.cluster_name
        )
    }

    /// Every role the operator manages for this cluster.
    pub fn roles(&self) -> String {
        format!(
            "arn:{}:iam::{}:role{}*",
            self.partition,
            self.account_id,
            naming::role_path(&self.cluster_name)
        )
    }

    fn associations(&self) -> String {
        format!(
            "arn:{}:eks:{}:{}:podidentityassociation/{}/*",
            self.partition, self.region, self.account_id, self.cluster_name
        )
    }
}

fn statement(sid: &str, effect: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({"Sid": sid, "Effect": effect, "Action": actions, "Resource": resources})
}

fn with_condition(mut st: Value, condition: Value) -> Value {
    st["Condition"] = condition;
    st
}

/// The union of a rule list over every rule, without duplicates, in a stable order.
fn union(
    config: &GuardrailConfig,
    list: impl Fn(&crate::guardrails::Rule) -> &[String],
) -> Vec<String> {
    let set: BTreeSet<&String> = config.rules.iter().flat_map(|r| list(r).iter()).collect();
    set.into_iter().cloned().collect()
}

/// The permissions boundaries a managed role must carry, when every rule demands one.
pub fn mandatory_boundaries(config: &GuardrailConfig) -> Option<Vec<String>> {
    let all: Option<BTreeSet<&String>> = config
        .rules
        .iter()
        .map(|r| r.permissions_boundary_arn.as_ref())
        .collect();
    all.filter(|set| !set.is_empty())
        .map(|set| set.into_iter().cloned().collect())
}

/// The managed policy ARNs (globs) a rule lets bindings attach: those it lists and
/// those of the presets it allows, in `partition`.
fn rule_policies(rule: &crate::guardrails::Rule, partition: &str) -> Vec<String> {
    let mut out = rule.allowed_managed_policy_arns.clone();
    for preset in crate::presets::all() {
        if rule
            .allowed_presets
            .iter()
            .any(|g| crate::glob::glob_match(g, &preset.name))
        {
            out.extend(crate::presets::possible_managed_policy_arns(
                preset, partition,
            ));
        }
    }
    out
}

/// Managed policies a rule refuses that no rule allows (matching each pattern as a
/// policy ARN against the rules' globs).
fn denied_everywhere(config: &GuardrailConfig, partition: &str) -> Vec<String> {
    let matches =
        |patterns: &[String], arn: &str| patterns.iter().any(|p| crate::glob::glob_match(p, arn));
    config
        .rules
        .iter()
        .flat_map(|r| r.denied_managed_policy_arns.iter())
        .filter(|arn| {
            !config.rules.iter().any(|r| {
                matches(&rule_policies(r, partition), arn)
                    && !matches(&r.denied_managed_policy_arns, arn)
            })
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The operator's identity policy for this installation under these guardrails.
pub fn permissions(inst: &Installation, config: &GuardrailConfig) -> Value {
    let roles = inst.roles();
    let owned =
        json!({"StringEquals": {format!("aws:ResourceTag/{TAG_CLUSTER}"): inst.cluster_name}});
    let tagged_for_us =
        json!({"StringEquals": {format!("aws:RequestTag/{TAG_CLUSTER}"): inst.cluster_name}});
    let boundaries = mandatory_boundaries(config);
    let mut statements = vec![statement(
        "ReadRolesOfThisCluster",
        "Allow",
        &ROLE_READS,
        vec![roles.clone()],
    )];

    let mut create = tagged_for_us.clone();
    if let Some(b) = &boundaries {
        create["StringEquals"]["iam:PermissionsBoundary"] = json!(b);
    }
    statements.push(with_condition(
        statement(
            "CreateRolesTaggedForThisCluster",
            "Allow",
            &["iam:CreateRole"],
            vec![roles.clone()],
        ),
        create,
    ));
    // CreateRole with tags is also authorized as iam:TagRole on the request's tags.
    statements.push(with_condition(
        statement(
            "TagNewRolesForThisCluster",
            "Allow",
            &["iam:TagRole"],
            vec![roles.clone()],
        ),
        tagged_for_us,
    ));

    let mut change = vec![
        "iam:DeleteRole",
        "iam:DeleteRolePolicy",
        "iam:DetachRolePolicy",
        "iam:PutRolePolicy",
        "iam:TagRole",
        "iam:UntagRole",
        "iam:UpdateAssumeRolePolicy",
        "iam:UpdateRole",
    ];
    if boundaries.is_none() {
        change.extend([
            "iam:DeleteRolePermissionsBoundary",
            "iam:PutRolePermissionsBoundary",
        ]);
    }
    change.sort_unstable();
    statements.push(with_condition(
        statement(
            "ChangeRolesOwnedByThisCluster",
            "Allow",
            &change,
            vec![roles.clone()],
        ),
        owned.clone(),
    ));
    if let Some(b) = &boundaries {
        let mut cond = owned.clone();
        cond["StringEquals"]["iam:PermissionsBoundary"] = json!(b);
        statements.push(with_condition(
            statement(
                "SetTheMandatoryBoundary",
                "Allow",
                &["iam:PutRolePermissionsBoundary"],
                vec![roles.clone()],
            ),
            cond,
        ));
    }

    let allowed_policies: Vec<String> = config
        .rules
        .iter()
        .flat_map(|r| rule_policies(r, &inst.partition))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !allowed_policies.is_empty() {
        let mut cond = owned.clone();
        if !allowed_policies.iter().any(|p| p == "*") {
            cond["ArnLike"] = json!({"iam:PolicyARN": allowed_policies});
        }
        statements.push(with_condition(
            statement(
                "AttachManagedPoliciesTheGuardrailsAllow",
                "Allow",
                &["iam:AttachRolePolicy"],
                vec![roles.clone()],
            ),
            cond,
        ));
    }

    // GetRole is how the operator learns whether a role exists, and IAM authorizes it
    // on `role/<name>` when the role does not exist (its path is not known then): so it
    // is allowed by name on every role. It reads a role's trust and tags, never its
    // permissions; existing roles named by bindings are read with it too.
    statements.push(statement(
        "ReadAnyRoleByNameToLearnWhetherItExists",
        "Allow",
        &["iam:GetRole"],
        vec![format!(
            "arn:{}:iam::{}:role/*",
            inst.partition, inst.account_id
        )],
    ));
    let existing = union(config, |r| &r.allowed_existing_role_arns);
    let mut passable = vec![roles.clone()];
    passable.extend(existing);
    statements.push(with_condition(
        statement(
            "PassRolesToEksPodIdentityOnly",
            "Allow",
            &["iam:PassRole"],
            passable,
        ),
        json!({"StringEquals": {"iam:PassedToService": POD_IDENTITY_PRINCIPAL}}),
    ));

    statements.push(statement(
        "DescribeTheClusterAndCreateAndListItsAssociations",
        "Allow",
        &[
            "eks:CreatePodIdentityAssociation",
            "eks:DescribeCluster",
            "eks:ListPodIdentityAssociations",
        ],
        vec![inst.cluster_arn()],
    ));
    statements.push(statement(
        "ManageTheClustersAssociations",
        "Allow",
        &[
            "eks:DeletePodIdentityAssociation",
            "eks:DescribePodIdentityAssociation",
            "eks:TagResource",
            "eks:UntagResource",
            "eks:UpdatePodIdentityAssociation",
        ],
        vec![inst.associations()],
    ));

    // TagRole may not give a role to another cluster, nor take one of another cluster.
    let tag = TAG_CLUSTER;
    statements.push(with_condition(
        statement(
            "NeverTagARoleForAnotherCluster",
            "Deny",
            &["iam:TagRole"],
            vec![roles.clone()],
        ),
        json!({
            "StringNotEquals": {format!("aws:RequestTag/{tag}"): inst.cluster_name},
            "Null": {format!("aws:RequestTag/{tag}"): "false"},
        }),
    ));
    statements.push(with_condition(
        statement(
            "NeverRetagAnotherClustersRole",
            "Deny",
            &["iam:TagRole"],
            vec![roles.clone()],
        ),
        json!({
            "StringNotEquals": {format!("aws:ResourceTag/{tag}"): inst.cluster_name},
            "Null": {format!("aws:ResourceTag/{tag}"): "false"},
        }),
    ));
    statements.push(with_condition(
        statement(
            "KeepTheOwnershipTags",
            "Deny",
            &["iam:UntagRole"],
            vec![roles.clone()],
        ),
        json!({"ForAnyValue:StringLike": {"aws:TagKeys": ["podidentity.dev/*"]}}),
    ));
    let denied = denied_everywhere(config, &inst.partition);
    if !denied.is_empty() {
        statements.push(with_condition(
            statement(
                "NeverAttachManagedPoliciesTheGuardrailsDeny",
                "Deny",
                &["iam:AttachRolePolicy"],
                vec!["*".into()],
            ),
            json!({"ArnLike": {"iam:PolicyARN": denied}}),
        ));
    }
    if let Some(own) = &inst.operator_role_arn {
        statements.push(json!({
            "Sid": "NeverTouchTheOperatorsOwnRole",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": own,
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The trust policy of the operator's own role: EKS Pod Identity, for the operator's
/// ServiceAccount of this cluster only.
pub fn trust(inst: &Installation) -> Value {
    crate::policy::pod_identity_trust_policy(Some(&TrustScope {
        account_id: inst.account_id.clone(),
        cluster_arn: inst.cluster_arn(),
        namespace: inst.namespace.clone(),
        service_account: inst.service_account.clone(),
    }))
}

/// The action and resource an `AccessDenied` message names (`... not authorized to
/// perform: <action> on resource: <arn> ...`).
pub fn denied_request(message: &str) -> Option<(String, String)> {
    let (_, rest) = message.split_once("perform: ")?;
    let (action, rest) = rest.split_once(" on resource: ")?;
    let resource = rest
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()
        .filter(|r| !r.is_empty())?;
    Some((action.trim().to_owned(), resource.to_owned()))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn applies(st: &Value, action: &str, resource: &str) -> bool {
    let action = action.to_ascii_lowercase();
    let act = |key| {
        strings(st.get(key))
            .iter()
            .any(|p| crate::glob::glob_match(&p.to_ascii_lowercase(), &action))
    };
    let res = |key| {
        strings(st.get(key))
            .iter()
            .any(|p| crate::glob::glob_match(p, resource))
    };
    let action_ok = if st.get("NotAction").is_some() {
        !act("NotAction")
    } else {
        act("Action")
    };
    let resource_ok = if st.get("NotResource").is_some() {
        !res("NotResource")
    } else {
        res("Resource")
    };
    action_ok && resource_ok
}

/// What the installation's policy says of a call AWS refused: the statement that would
/// allow it (then the operator's role lacks that statement), or why the operator should
/// not need it.
pub fn explain_denial(policy: &Value, action: &str, resource: &str) -> String {
    let statements = strings_of_statements(policy);
    let sid = |st: &Value| {
        st.get("Sid")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_owned()
    };
    let matching: Vec<&Value> = statements
        .into_iter()
        .filter(|st| applies(st, action, resource))
        .collect();
    let render = "`pod-identity-operator iam-policy` (config/iam/README.md)";
    let effect = |st: &&Value, e: &str| st.get("Effect").and_then(Value::as_str) == Some(e);
    let conditional = |st: &&Value| st.get("Condition").is_some();
    let condition = |st: &Value| st.get("Condition").cloned().unwrap_or(Value::Null);
    let (denies, allows): (Vec<&Value>, Vec<&Value>) =
        matching.into_iter().partition(|st| effect(st, "Deny"));
    let allows: Vec<&Value> = allows
        .into_iter()
        .filter(|st| effect(st, "Allow"))
        .collect();
    if let Some(deny) = denies.iter().find(|st| !conditional(st)) {
        return format!(
            "{action} on {resource}: statement {} of this installation's policy denies it on purpose; the operator should not need it, so a guardrail let through what it should have refused",
            sid(deny)
        );
    }
    // Conditions are not known from a denial: a conditional Deny may or may not apply.
    let also_denied = denies
        .first()
        .map(|d| {
            format!(
                "; statement {} denies it on purpose when {}",
                sid(d),
                condition(d)
            )
        })
        .unwrap_or_default();
    if let Some(plain) = allows.iter().find(|st| !conditional(st)) {
        return format!(
            "{action} on {resource}: statement {} of this installation's policy allows it; attach the policy rendered by {render} to the operator's role{also_denied}",
            sid(plain)
        );
    }
    if let Some(cond) = allows.first() {
        return format!(
            "{action} on {resource}: statement {} of this installation's policy allows it only when {}; if the request meets that, attach the policy rendered by {render} to the operator's role, otherwise the operator should not need it{also_denied}",
            sid(cond),
            condition(cond)
        );
    }
    format!(
        "{action} on {resource}: no statement of this installation's policy ({render}) allows it; the operator should not need it{also_denied}"
    )
}

fn strings_of_statements(policy: &Value) -> Vec<&Value> {
    match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// The statements' Sids, in order.
pub fn sids(policy: &Value) -> Vec<String> {
    strings_of_statements(policy)
        .iter()
        .filter_map(|st| st.get("Sid").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The installation of the templates in `config/iam/`: placeholders for its values.
pub fn template_installation() -> Installation {
    let mut inst = Installation::new("${CLUSTER}", "${ACCOUNT}", "${REGION}");
    inst.partition = "${PARTITION}".into();
    inst.with_operator_role(Some(
        "arn:${PARTITION}:iam::${ACCOUNT}:role/pod-identity-operator".into(),
    ))
}

/// Which document of the operator's role `iam-policy` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyDocument {
    Permissions,
    Trust,
}

/// What `pod-identity-operator iam-policy` prints: the installation's permissions policy,
/// under the guardrails of the file `guardrails` (the one the operator runs with), or
/// its trust policy, as JSON. A policy over IAM's managed-policy size is refused.
pub fn command(
    inst: &Installation,
    document: PolicyDocument,
    guardrails: Option<&Path>,
) -> Result<String> {
    let doc = match document {
        PolicyDocument::Permissions => {
            let path = guardrails.ok_or_else(|| {
                Error::Usage(
                    "the permissions depend on the guardrails: pass --config FILE, the file the operator runs with".into(),
                )
            })?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::context(format!("cannot read {}", path.display()), e))?;
            let guardrails = GuardrailConfig::parse(&text).map_err(|e| {
                Error::context(
                    format!("{} is not a valid guardrail file", path.display()),
                    e,
                )
            })?;
            permissions(inst, &guardrails)
        }
        PolicyDocument::Trust => trust(inst),
    };
    let size = crate::policy::size_chars(&doc);
    if size > MANAGED_POLICY_MAX_CHARS {
        return Err(Error::Usage(format!(
            "the rendered policy has {size} characters, over IAM's {MANAGED_POLICY_MAX_CHARS} for a managed policy: merge the guardrails' ARN lists into fewer globs"
        )));
    }
    Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> Installation {
        Installation::new("prod", "111122223333", "us-east-1").with_operator_role(Some(
            "arn:aws:iam::111122223333:role/pod-identity-operator".into(),
        ))
    }

    fn guardrails(text: &str) -> GuardrailConfig {
        GuardrailConfig::parse(text).expect("guardrails")
    }

    /// `config/iam/*.template.json`: the documents rendered for the example guardrails
    /// (`config/guardrails.example.yaml`) with placeholders; `PIO_REGENERATE=1` rewrites
    /// them.
    #[test]
    fn the_templates_in_config_iam_are_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let example = guardrails(include_str!("../../../config/guardrails.example.yaml"));
        let inst = template_installation();
        for (file, doc) in [
            (
                "operator-policy.template.json",
                permissions(&inst, &example),
            ),
            ("operator-trust-policy.template.json", trust(&inst)),
        ] {
            let path = root.join("config/iam").join(file);
            let want = format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON"));
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have == want {
                continue;
            }
            if std::env::var_os("PIO_REGENERATE").is_some_and(|v| v == "1") {
                std::fs::write(&path, want).expect("template written");
                continue;
            }
            panic!(
                "{} is stale: run `PIO_REGENERATE=1 cargo test -p pod-identity-operator-lib --lib operator_policy`",
                path.display()
            );
        }
        assert!(
            crate::policy::size_chars(&permissions(&inst, &example)) <= MANAGED_POLICY_MAX_CHARS
        );
    }

    #[test]
    fn an_installation_is_read_from_its_cluster_arn() {
        let c = Cluster {
            name: "prod".into(),
            arn: "arn:aws-cn:eks:cn-north-1:111122223333:cluster/prod".into(),
            account_id: "111122223333".into(),
            status: None,
        };
        let i = Installation::of_cluster(&c).expect("parsed");
        assert_eq!(
            (
                i.partition.as_str(),
                i.region.as_str(),
                i.account_id.as_str()
            ),
            ("aws-cn", "cn-north-1", "111122223333")
        );
        assert_eq!(i.cluster_arn(), c.arn);
        assert_eq!(
            i.roles(),
            "arn:aws-cn:iam::111122223333:role/pod-identity/prod/*"
        );
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }

    #[test]
    fn a_boundary_every_rule_demands_becomes_a_condition_and_cannot_be_removed() {
        let one = guardrails(
            "rules:\n- name: a\n  namespaces: [a]\n  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/b\n\
             - name: b\n  namespaces: [b]\n  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/c\n",
        );
        let p = permissions(&inst(), &one);
        let text = p.to_string();
        assert!(!text.contains("DeleteRolePermissionsBoundary"), "{text}");
        assert!(sids(&p).contains(&"SetTheMandatoryBoundary".to_owned()));
        let create = &p["Statement"][1];
        assert_eq!(
            create["Condition"]["StringEquals"]["iam:PermissionsBoundary"],
            json!([
                "arn:aws:iam::111122223333:policy/b",
                "arn:aws:iam::111122223333:policy/c"
            ])
        );
        let some = guardrails(
            "rules:\n- name: a\n  namespaces: [a]\n  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/b\n\
             - name: b\n  namespaces: [b]\n",
        );
        let p = permissions(&inst(), &some);
        assert!(p.to_string().contains("DeleteRolePermissionsBoundary"));
        assert!(!sids(&p).contains(&"SetTheMandatoryBoundary".to_owned()));
    }

    #[test]
    fn attach_is_limited_to_the_union_of_allowed_policies_and_those_no_rule_allows_are_denied() {
        let g = guardrails(
            "rules:\n- name: a\n  namespaces: [a]\n  allowedManagedPolicyArns: [\"arn:aws:iam::aws:policy/ReadOnlyAccess\", \"arn:aws:iam::111122223333:policy/ok-admin\"]\n  deniedManagedPolicyArns: [\"arn:aws:iam::aws:policy/AdministratorAccess\"]\n\
             - name: b\n  namespaces: [b]\n  allowedManagedPolicyArns: [\"arn:aws:iam::111122223333:policy/ok-*\"]\n  deniedManagedPolicyArns: [\"arn:aws:iam::aws:policy/AdministratorAccess\", \"arn:aws:iam::111122223333:policy/ok-admin\"]\n",
        );
        let p = permissions(&inst(), &g);
        let attach = strings_of_statements(&p)
            .into_iter()
            .find(|s| s["Sid"] == "AttachManagedPoliciesTheGuardrailsAllow")
            .expect("attach statement");
        assert_eq!(
            attach["Condition"]["ArnLike"]["iam:PolicyARN"],
            json!([
                "arn:aws:iam::111122223333:policy/ok-*",
                "arn:aws:iam::111122223333:policy/ok-admin",
                "arn:aws:iam::aws:policy/ReadOnlyAccess"
            ])
        );
        let deny = strings_of_statements(&p)
            .into_iter()
            .find(|s| s["Sid"] == "NeverAttachManagedPoliciesTheGuardrailsDeny")
            .expect("deny statement");
        assert_eq!(
            deny["Condition"]["ArnLike"]["iam:PolicyARN"],
            json!(["arn:aws:iam::aws:policy/AdministratorAccess"])
        );
        let none = permissions(
            &inst(),
            &guardrails("rules:\n- name: a\n  namespaces: [a]\n"),
        );
        assert!(!none.to_string().contains("AttachRolePolicy"), "{none}");
    }

    #[test]
    fn the_operators_own_trust_admits_its_service_account_of_its_cluster_only() {
        let t = trust(&inst());
        let cond = &t["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            cond["aws:RequestTag/kubernetes-namespace"],
            "pod-identity-system"
        );
        assert_eq!(
            cond["aws:RequestTag/kubernetes-service-account"],
            "pod-identity-operator"
        );
        assert_eq!(
            cond["aws:RequestTag/eks-cluster-arn"],
            "arn:aws:eks:us-east-1:111122223333:cluster/prod"
        );
        assert_eq!(cond["aws:SourceAccount"], "111122223333");
    }

    #[test]
    fn denials_are_explained_by_the_statement_that_would_allow_them_or_not() {
        let g = guardrails(
            "rules:\n- name: a\n  namespaces: [a]\n  allowedManagedPolicyArns: [\"arn:aws:iam::aws:policy/ReadOnlyAccess\"]\n",
        );
        let p = permissions(&inst(), &g);
        let msg = "User: arn:aws:sts::111122223333:assumed-role/op/s is not authorized to perform: iam:CreateRole on resource: arn:aws:iam::111122223333:role/pod-identity/prod/x because no identity-based policy allows the iam:CreateRole action";
        let (action, resource) = denied_request(msg).expect("parsed");
        assert_eq!(action, "iam:CreateRole");
        assert_eq!(
            resource,
            "arn:aws:iam::111122223333:role/pod-identity/prod/x"
        );
        let e = explain_denial(&p, &action, &resource);
        assert!(
            e.contains("CreateRolesTaggedForThisCluster") && e.contains("only when"),
            "{e}"
        );
        let e = explain_denial(
            &p,
            "eks:DescribeCluster",
            "arn:aws:eks:us-east-1:111122223333:cluster/prod",
        );
        assert!(e.contains("DescribeTheClusterAndCreateAndListItsAssociations of this installation's policy allows it; attach"), "{e}");
        let e = explain_denial(
            &p,
            "iam:GetRole",
            "arn:aws:iam::111122223333:role/pod-identity-operator",
        );
        assert!(
            e.contains("NeverTouchTheOperatorsOwnRole") && e.contains("should not need it"),
            "{e}"
        );
        let e = explain_denial(
            &p,
            "iam:GetRolePolicy",
            "arn:aws:iam::111122223333:role/deploy",
        );
        assert!(
            e.contains("no statement") && e.contains("should not need it"),
            "{e}"
        );
        assert_eq!(denied_request("Access denied"), None);
    }
}
