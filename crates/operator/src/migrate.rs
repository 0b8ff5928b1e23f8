//! `pod-identity-operator migrate`: from IRSA (and associations made elsewhere) to
//! `PodIdentityBinding`s.
//!
//! [`plan`] is a pure function of the audit's [`Observed`] and the [`Options`]: one
//! binding per IRSA-annotated ServiceAccount (`role.arn` of its IRSA role,
//! `serviceAccount.create: false`, `adopt: true` only where an association that is
//! unowned or ours already exists), the trust-policy and annotation changes `--apply`
//! would make, and the steps only the user can take (add-ons, roles of other accounts).
//! Planning reads and changes nothing; the binding YAML goes to a local folder for a
//! GitOps repository. [`apply`] makes the planned AWS and Kubernetes changes, with the
//! caller's credentials: `--update-trust` adds a Pod Identity statement scoped by the
//! session tags EKS sets (the OIDC statement stays), `--remove-irsa` removes the IRSA
//! annotation of ServiceAccounts whose binding is Ready and, with
//! `--remove-oidc-trust`, the OIDC statement that admitted only that ServiceAccount.
//! Add-on-owned associations and add-ons on IRSA are never touched: the plan prints the
//! `aws eks update-addon` step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Result;
use crate::audit::{self, Observed, Owner, Selection};
use crate::aws::{Association, IamApi};
use crate::cli::connection::Output;
use crate::cli::migrate::MigrateArgs;
use crate::guardrails::IRSA_ROLE_ANNOTATION;
use crate::naming;
use crate::policy::{POD_IDENTITY_PRINCIPAL, TrustScope, trust_admits_pod_identity};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Add a scoped Pod Identity statement to each IRSA role that lacks one.
    pub update_trust: bool,
    /// Remove the IRSA annotation of ServiceAccounts whose binding is Ready.
    pub remove_irsa: bool,
    /// With `remove_irsa`, also remove the role's OIDC statement for that
    /// ServiceAccount.
    pub remove_oidc_trust: bool,
}

/// One binding to write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedBinding {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub role_arn: String,
    pub adopt: bool,
    /// The binding as a manifest.
    pub manifest: Value,
}

impl PlannedBinding {
    /// The file name under `--out`.
    pub fn file_name(&self) -> String {
        format!("{}.{}.yaml", self.namespace, self.name)
    }
}

/// A change `--apply` makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Change {
    /// UpdateAssumeRolePolicy with `document`.
    #[serde(rename_all = "camelCase")]
    UpdateTrust {
        role_name: String,
        role_arn: String,
        document: Value,
        /// What changes, in words.
        changes: Vec<String>,
    },
    /// Removes the IRSA annotation (it must still name `role_arn`).
    #[serde(rename_all = "camelCase")]
    RemoveIrsaAnnotation {
        namespace: String,
        service_account: String,
        role_arn: String,
    },
}

/// Something the user does or should know, which `--apply` does not do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub subject: String,
    pub message: String,
}

/// What `migrate` would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub cluster: String,
    pub bindings: Vec<PlannedBinding>,
    pub changes: Vec<Change>,
    pub notes: Vec<Note>,
}

/// The Sid of the Pod Identity statement `--update-trust` adds for one ServiceAccount.
fn pod_identity_sid(cluster_arn: &str, namespace: &str, service_account: &str) -> String {
    format!(
        "PodIdentity{}",
        naming::short_hash(&[cluster_arn, namespace, service_account])
    )
}

fn statements_of(doc: &Value) -> Vec<Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(one) => vec![one.clone()],
        None => Vec::new(),
    }
}

/// True when a trust statement is IRSA's for exactly this ServiceAccount: a federated
/// OIDC provider allowed `sts:AssumeRoleWithWebIdentity` with its `:sub` condition naming
/// `system:serviceaccount:<namespace>:<name>` and nothing else.
pub fn is_oidc_statement_for(st: &Value, namespace: &str, service_account: &str) -> bool {
    let federated = st
        .get("Principal")
        .and_then(|p| p.get("Federated"))
        .and_then(Value::as_str)
        .is_some_and(|f| f.contains(":oidc-provider/"));
    let web_identity = match st.get("Action") {
        Some(Value::String(a)) => a.eq_ignore_ascii_case("sts:AssumeRoleWithWebIdentity"),
        Some(Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case("sts:AssumeRoleWithWebIdentity"))
        }),
        _ => false,
    };
    let subject = format!("system:serviceaccount:{namespace}:{service_account}");
    let subs: Vec<&Value> = st
        .get("Condition")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|ops| ops.values())
        .filter_map(Value::as_object)
        .flat_map(|keys| keys.iter())
        .filter(|(k, _)| k.ends_with(":sub"))
        .map(|(_, v)| v)
        .collect();
    let only_this = !subs.is_empty()
        && subs.iter().all(|v| match v {
            Value::String(s) => *s == subject,
            Value::Array(list) => list.len() == 1 && list[0].as_str() == Some(subject.as_str()),
            _ => false,
        });
    federated && web_identity && only_this
}

/// The plan for an observation.
pub fn plan(o: &Observed, opts: &Options) -> Plan {
    let mut p = Plan {
        cluster: o.cluster_name.clone(),
        ..Plan::default()
    };
    let mut trust = Trusts::new();
    for sa in &o.irsa_service_accounts {
        service_account(o, opts, sa, &mut p, &mut trust);
    }

    for (arn, (name, document, changes)) in trust {
        if !changes.is_empty() {
            p.changes.push(Change::UpdateTrust {
                role_name: name,
                role_arn: arn,
                document,
                changes,
            });
        }
    }
    // Trust first: a binding goes Ready only once its role is trusted, and annotations
    // go only after.
    p.changes.sort_by_key(|c| match c {
        Change::UpdateTrust { .. } => 0,
        Change::RemoveIrsaAnnotation { .. } => 1,
    });

    addons_on_irsa(o, &mut p);
    addon_associations(o, &mut p);
    p
}

/// Trust documents as they will be, per role ARN: the role's name, the document and
/// the changes in words.
type Trusts = BTreeMap<String, (String, Value, Vec<String>)>;

fn note(p: &mut Plan, subject: String, message: String) {
    p.notes.push(Note { subject, message });
}

/// What the plan does for one ServiceAccount on IRSA: its binding (or why none), the
/// Pod Identity statement its role's trust needs, and, once the binding is `Ready`, the
/// removal of its annotation and of the OIDC statement admitting it.
fn service_account(
    o: &Observed,
    opts: &Options,
    sa: &audit::IrsaServiceAccount,
    p: &mut Plan,
    trust: &mut Trusts,
) {
    let subject = format!("{}/{}", sa.namespace, sa.name);
    if let Some(ad) = o
        .addons
        .iter()
        .find(|a| a.service_account_role_arn.as_deref() == Some(sa.role_arn.as_str()))
    {
        note(
            p,
            subject,
            format!(
                "the EKS add-on {} gives this ServiceAccount its IRSA role: no binding; once the role trusts {POD_IDENTITY_PRINCIPAL}, run `{}`",
                ad.name,
                audit::update_addon_step(&o.cluster_name, &ad.name, &sa.name, &sa.role_arn)
            ),
        );
        return;
    }
    let Some(role) = naming::parse_role_arn(&sa.role_arn) else {
        note(
            p,
            subject,
            format!(
                "the annotation {:?} is not a role ARN: nothing to migrate",
                sa.role_arn
            ),
        );
        return;
    };
    let association = o.association_for(&sa.namespace, &sa.name);
    if let Some(a) = association
        && let Owner::Addon(_) = Owner::of(a)
    {
        let owner = Owner::of(a);
        note(
            p,
            subject,
            format!(
                "its association belongs to the {owner}: no binding may adopt it; change it with `{}`",
                audit::update_addon_step(
                    &o.cluster_name,
                    owner.addon_name().unwrap_or("<add-on>"),
                    &sa.name,
                    &sa.role_arn
                )
            ),
        );
        return;
    }
    let existing = o.binding_for(&sa.namespace, &sa.name);
    match existing {
        Some(b) => note(
            p,
            subject.clone(),
            format!(
                "already named by the binding {}: no new binding",
                b.name_any()
            ),
        ),
        None => p.bindings.push(new_binding(sa, association)),
    }

    if role.account_id != o.account_id {
        note(
            p,
            subject.clone(),
            format!(
                "the role {} is in account {}, not the cluster's: EKS refuses it for an association; give the binding a role of account {} with targetRoleArn {}",
                sa.role_arn, role.account_id, o.account_id, sa.role_arn
            ),
        );
        return;
    }
    let Some(Some(current)) = o.role(&sa.role_arn) else {
        note(
            p,
            subject.clone(),
            format!("the role {} does not exist", sa.role_arn),
        );
        return;
    };
    let entry = trust.entry(sa.role_arn.clone()).or_insert_with(|| {
        (
            current.name.clone(),
            current.assume_role_policy.clone(),
            Vec::new(),
        )
    });
    if !trust_admits_pod_identity(&entry.1) {
        if opts.update_trust {
            add_pod_identity_statement(o, sa, &mut entry.1);
            entry.2.push(format!(
                "add a {POD_IDENTITY_PRINCIPAL} statement for {subject} scoped by session tags (the OIDC statement stays)"
            ));
        } else {
            note(
                p,
                subject.clone(),
                format!(
                    "the role {} does not trust {POD_IDENTITY_PRINCIPAL}: its binding stays not Ready until it does (--apply --update-trust adds a scoped statement)",
                    sa.role_arn
                ),
            );
        }
    }

    if opts.remove_irsa {
        let ready = existing.is_some_and(|b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        });
        if !ready {
            note(
                p,
                subject.clone(),
                "its binding is not Ready (or not applied yet): the IRSA annotation stays".into(),
            );
            return;
        }
        p.changes.push(Change::RemoveIrsaAnnotation {
            namespace: sa.namespace.clone(),
            service_account: sa.name.clone(),
            role_arn: sa.role_arn.clone(),
        });
        if opts.remove_oidc_trust {
            match without_oidc_statement(&entry.1, sa) {
                None => note(
                    p,
                    subject.clone(),
                    format!(
                        "no OIDC statement of {} admits only this ServiceAccount: the trust's OIDC part stays",
                        sa.role_arn
                    ),
                ),
                Some(kept) => {
                    entry.1["Statement"] = Value::Array(kept);
                    entry
                        .2
                        .push(format!("remove the OIDC statement admitting {subject}"));
                }
            }
        }
    }
}

/// The binding a ServiceAccount on IRSA gets: its role, and `adopt` when an
/// association made outside any add-on is already there.
fn new_binding(
    sa: &audit::IrsaServiceAccount,
    association: Option<&Association>,
) -> PlannedBinding {
    let adopt = association.is_some_and(|a| {
        matches!(
            Owner::of(a),
            Owner::ThisOperator | Owner::Unknown | Owner::Eksctl | Owner::Terraform
        )
    });
    let mut spec = json!({
        "serviceAccount": {"name": sa.name, "create": false},
        "role": {"arn": sa.role_arn},
    });
    if adopt {
        spec["adopt"] = json!(true);
    }
    PlannedBinding {
        namespace: sa.namespace.clone(),
        name: sa.name.clone(),
        service_account: sa.name.clone(),
        role_arn: sa.role_arn.clone(),
        adopt,
        manifest: json!({
            "apiVersion": "podidentity.dev/v1alpha1",
            "kind": "PodIdentityBinding",
            "metadata": {"name": sa.name, "namespace": sa.namespace},
            "spec": spec,
        }),
    }
}

/// Adds to a trust document the statement admitting Pod Identity for this
/// ServiceAccount only (scoped by the session tags EKS sets).
fn add_pod_identity_statement(o: &Observed, sa: &audit::IrsaServiceAccount, document: &mut Value) {
    let scoped = crate::policy::pod_identity_trust_policy(Some(&TrustScope {
        account_id: o.account_id.clone(),
        cluster_arn: o.cluster_arn.clone(),
        namespace: sa.namespace.clone(),
        service_account: sa.name.clone(),
    }));
    let mut statement = statements_of(&scoped).remove(0);
    statement["Sid"] = json!(pod_identity_sid(&o.cluster_arn, &sa.namespace, &sa.name));
    let mut list = statements_of(document);
    list.push(statement);
    document["Statement"] = Value::Array(list);
}

/// A trust document's statements without the OIDC statements admitting only this
/// ServiceAccount; `None` when it has none.
fn without_oidc_statement(document: &Value, sa: &audit::IrsaServiceAccount) -> Option<Vec<Value>> {
    let before = statements_of(document);
    let kept: Vec<Value> = before
        .iter()
        .filter(|st| !is_oidc_statement_for(st, &sa.namespace, &sa.name))
        .cloned()
        .collect();
    (kept.len() < before.len()).then_some(kept)
}

/// Add-ons on IRSA whose ServiceAccount the cluster does not show: the step to move them.
fn addons_on_irsa(o: &Observed, p: &mut Plan) {
    for ad in &o.addons {
        if let Some(role) = &ad.service_account_role_arn
            && !o.irsa_service_accounts.iter().any(|s| &s.role_arn == role)
        {
            note(
                p,
                ad.name.clone(),
                format!(
                    "the add-on uses IRSA ({role}); once the role trusts {POD_IDENTITY_PRINCIPAL}, run `{}`",
                    audit::update_addon_step(
                        &o.cluster_name,
                        &ad.name,
                        "<its ServiceAccount>",
                        role
                    )
                ),
            );
        }
    }
}

/// Associations an add-on owns, of ServiceAccounts not on IRSA: left as they are.
fn addon_associations(o: &Observed, p: &mut Plan) {
    for a in &o.associations {
        if let owner @ Owner::Addon(_) = Owner::of(a)
            && !o
                .irsa_service_accounts
                .iter()
                .any(|s| s.namespace == a.namespace && s.name == a.service_account)
        {
            note(
                p,
                format!("{}/{}", a.namespace, a.service_account),
                format!(
                    "association owned by the {owner}: left as it is; change it only with `{}`",
                    audit::update_addon_step(
                        &o.cluster_name,
                        owner.addon_name().unwrap_or("<add-on>"),
                        &a.service_account,
                        &a.role_arn
                    )
                ),
            );
        }
    }
}

/// Writes each planned binding as YAML under `dir` (created if missing) and returns the
/// paths written.
pub fn write_bindings(plan: &Plan, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for b in &plan.bindings {
        let path = dir.join(b.file_name());
        std::fs::write(&path, serde_yaml::to_string(&b.manifest)?)?;
        written.push(path);
    }
    Ok(written)
}

/// Makes the plan's changes, in order, stopping at the first failure.
pub async fn apply(plan: &Plan, client: &Client, iam: &dyn IamApi) -> Result<()> {
    for change in &plan.changes {
        match change {
            Change::UpdateTrust {
                role_name,
                document,
                ..
            } => iam.update_assume_role_policy(role_name, document).await?,
            Change::RemoveIrsaAnnotation {
                namespace,
                service_account,
                role_arn,
            } => {
                let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
                let pointer = format!(
                    "/metadata/annotations/{}",
                    IRSA_ROLE_ANNOTATION.replace('~', "~0").replace('/', "~1")
                );
                // The test makes the patch fail, changing nothing, should the annotation
                // have changed since it was read.
                let patch: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "test", "path": pointer, "value": role_arn},
                    {"op": "remove", "path": pointer},
                ]))?;
                sas.patch(
                    service_account,
                    &PatchParams::default(),
                    &Patch::<()>::Json(patch),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// The plan for people.
pub fn render_plan(plan: &Plan, written: &[PathBuf], applied: bool) -> String {
    let mut out = String::new();
    if plan.bindings.is_empty() {
        out += "no binding to write\n";
    } else {
        let rows: Vec<Vec<String>> = plan
            .bindings
            .iter()
            .map(|b| {
                vec![
                    format!("{}/{}", b.namespace, b.name),
                    b.role_arn.clone(),
                    if b.adopt { "yes" } else { "no" }.to_owned(),
                    written
                        .iter()
                        .find(|p| p.ends_with(b.file_name()))
                        .map_or("(not written: no --out)".to_owned(), |p| {
                            p.display().to_string()
                        }),
                ]
            })
            .collect();
        out += &audit::table(&["BINDING", "ROLE", "ADOPT", "FILE"], &rows);
    }
    out += "\n";
    if plan.changes.is_empty() {
        out += "no AWS or Kubernetes change to make\n";
    } else {
        let rows: Vec<Vec<String>> = plan
            .changes
            .iter()
            .map(|c| match c {
                Change::UpdateTrust {
                    role_arn, changes, ..
                } => vec![
                    "UpdateAssumeRolePolicy".to_owned(),
                    role_arn.clone(),
                    changes.join("; "),
                ],
                Change::RemoveIrsaAnnotation {
                    namespace,
                    service_account,
                    ..
                } => vec![
                    "RemoveIrsaAnnotation".to_owned(),
                    format!("{namespace}/{service_account}"),
                    format!("remove {IRSA_ROLE_ANNOTATION}"),
                ],
            })
            .collect();
        out += &audit::table(
            &[
                if applied {
                    "APPLIED"
                } else {
                    "WOULD APPLY (--apply)"
                },
                "TARGET",
                "CHANGE",
            ],
            &rows,
        );
    }
    if !plan.notes.is_empty() {
        out += "\n";
        let rows: Vec<Vec<String>> = plan
            .notes
            .iter()
            .map(|n| vec![n.subject.clone(), n.message.clone()])
            .collect();
        out += &audit::table(&["NOTE", "WHAT TO DO"], &rows);
    }
    out
}

/// Runs `migrate`.
pub async fn run(args: &MigrateArgs) -> Result<()> {
    let c = audit::Clients::connect(&args.connection).await?;
    let selection = Selection {
        namespace: args.namespace.clone(),
        selector: args.selector.clone(),
    };
    let options = Options {
        update_trust: args.update_trust,
        remove_irsa: args.remove_irsa,
        remove_oidc_trust: args.remove_oidc_trust,
    };
    let (plan, written) = migrate(
        &c.kube,
        &c.iam,
        &c.eks,
        &args.connection.cluster_name,
        &selection,
        &options,
        args.out.as_deref(),
        args.apply,
    )
    .await?;
    match args.output {
        Output::Table => print!("{}", render_plan(&plan, &written, args.apply)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    Ok(())
}

/// Observes, plans, writes the bindings under `out` when given, and applies the changes
/// when `apply`; returns the plan and the files written.
#[allow(clippy::too_many_arguments)]
pub async fn migrate(
    client: &Client,
    iam: &dyn IamApi,
    eks: &dyn crate::aws::EksApi,
    cluster_name: &str,
    selection: &Selection,
    options: &Options,
    out: Option<&Path>,
    apply_changes: bool,
) -> Result<(Plan, Vec<PathBuf>)> {
    let observed = audit::observe(client, iam, eks, cluster_name, selection).await?;
    let plan = plan(&observed, options);
    let written = match out {
        Some(dir) => write_bindings(&plan, dir)?,
        None => Vec::new(),
    };
    if apply_changes {
        apply(&plan, client, iam).await?;
    } else if options.update_trust || options.remove_irsa {
        tracing::info!("plan only: pass --apply to make these changes");
    }
    Ok((plan, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_statements_are_recognised_for_one_service_account_only() {
        let st = |sub: Value| {
            json!({"Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/A"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {"oidc.eks.us-east-1.amazonaws.com/id/A:sub": sub}}})
        };
        assert!(is_oidc_statement_for(
            &st(json!("system:serviceaccount:apps:web")),
            "apps",
            "web"
        ));
        assert!(is_oidc_statement_for(
            &st(json!(["system:serviceaccount:apps:web"])),
            "apps",
            "web"
        ));
        assert!(!is_oidc_statement_for(
            &st(json!("system:serviceaccount:apps:web")),
            "apps",
            "api"
        ));
        assert!(!is_oidc_statement_for(
            &st(json!([
                "system:serviceaccount:apps:web",
                "system:serviceaccount:apps:api"
            ])),
            "apps",
            "web"
        ));
        let pods = crate::policy::pod_identity_trust_policy(None);
        assert!(!is_oidc_statement_for(
            &statements_of(&pods)[0],
            "apps",
            "web"
        ));
    }
}
