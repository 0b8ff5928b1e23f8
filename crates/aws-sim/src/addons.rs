//! The simulator's EKS add-ons, IAM OIDC providers and role listing: what an account
//! that ran IRSA and EKS add-ons before this operator holds.
//!
//! - Add-ons are set up as an administrator would create them ([`AwsSim::add_addon`]);
//!   an add-on given Pod Identity associations gets them made by EKS, each owned by the
//!   add-on (its `ownerArn` is the add-on's ARN) and listed in the add-on's
//!   `podIdentityAssociations`, as CreateAddon does. DescribeAddon and ListAddons read
//!   them; a missing add-on is `ResourceNotFoundException`.
//! - OIDC providers ([`AwsSim::add_oidc_provider`]) are what IRSA trust policies name as
//!   their `Federated` principal. IAM refuses a trust policy naming an OIDC provider the
//!   account does not have with `MalformedPolicyDocument` ("Invalid principal in
//!   policy"), which is what Terraform and Pulumi users meet when the role is created
//!   before its provider.
//! - ListRoles lists the roles under a path prefix, without tags or permissions
//!   boundaries, as IAM does.

use serde_json::Value;

use super::{AssociationRecord, AwsSim, State, authz, random_id, rules};
use crate::faults::aws_error;
use pod_identity_aws::Result;
use pod_identity_aws::{Addon, Association, Role};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// An add-on as an administrator creates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddonSetup {
    pub name: String,
    pub version: Option<String>,
    /// IRSA: the role EKS annotates the add-on's ServiceAccount with.
    pub service_account_role_arn: Option<String>,
    /// Pod Identity associations EKS makes for the add-on: (namespace, ServiceAccount,
    /// role ARN).
    pub pod_identity_associations: Vec<(String, String, String)>,
}

impl AwsSim {
    /// Creates an add-on on `cluster` with the associations it asks for, each owned by
    /// the add-on. Fails as CreateAddon would: no such cluster, an add-on of that name
    /// already there, or a ServiceAccount that already has an association.
    pub fn add_addon(&self, cluster: &str, setup: &AddonSetup) -> Result<Addon> {
        const OP: &str = "CreateAddon";
        let now = self.now_utc();
        let mut guard = self.lock();
        let s = &mut *guard;
        let region = self.config.region.clone();
        let Some(c) = s.clusters.get(cluster) else {
            return Err(rules::no_cluster(OP, cluster));
        };
        if c.addons.contains_key(&setup.name) {
            return Err(aws_error(
                OP,
                "ResourceInUseException",
                &format!("Addon already exists: {}", setup.name),
            ));
        }
        let account = c.cluster.account_id.clone();
        for (ns, sa, _) in &setup.pod_identity_associations {
            if c.associations
                .values()
                .any(|r| &r.association.namespace == ns && &r.association.service_account == sa)
            {
                return Err(aws_error(
                    OP,
                    "ResourceInUseException",
                    &format!("Association already exists for {ns}/{sa}"),
                ));
            }
        }
        let uuid = uuid::Uuid::new_v4();
        let arn = format!(
            "arn:aws:eks:{region}:{account}:addon/{cluster}/{}/{uuid}",
            setup.name
        );
        let mut arns = Vec::new();
        for (ns, sa, role) in &setup.pod_identity_associations {
            let id = format!("a-{}", random_id(&mut s.rng, ID_ALPHABET, 17));
            s.seq += 1;
            let seq = s.seq;
            let association_arn =
                format!("arn:aws:eks:{region}:{account}:podidentityassociation/{cluster}/{id}");
            arns.push(association_arn.clone());
            let association = Association {
                cluster_name: cluster.to_owned(),
                association_id: id.clone(),
                association_arn,
                namespace: ns.clone(),
                service_account: sa.clone(),
                role_arn: role.clone(),
                target_role_arn: None,
                disable_session_tags: false,
                session_policy: None,
                external_id: None,
                owner_arn: Some(arn.clone()),
                tags: Default::default(),
                created_at: Some(now),
                modified_at: Some(now),
            };
            if let Some(c) = s.clusters.get_mut(cluster) {
                c.associations
                    .insert(id, AssociationRecord { association, seq });
            }
        }
        let addon = Addon {
            cluster_name: cluster.to_owned(),
            name: setup.name.clone(),
            arn,
            status: Some("ACTIVE".into()),
            version: setup.version.clone(),
            service_account_role_arn: setup.service_account_role_arn.clone(),
            pod_identity_association_arns: arns,
        };
        if let Some(c) = s.clusters.get_mut(cluster) {
            c.addons.insert(setup.name.clone(), addon.clone());
        }
        Ok(addon)
    }

    /// Registers an IAM OIDC identity provider for `issuer_url` (with or without its
    /// `https://`) and returns its ARN, as CreateOpenIDConnectProvider would.
    pub fn add_oidc_provider(&self, issuer_url: &str) -> String {
        let host = issuer_url.trim_start_matches("https://");
        let arn = format!(
            "arn:aws:iam::{}:oidc-provider/{host}",
            self.config.account_id
        );
        self.lock().oidc_providers.insert(arn.clone());
        arn
    }

    pub(super) fn describe_addon_now(
        &self,
        op: &str,
        cluster: &str,
        name: &str,
    ) -> Result<Option<Addon>> {
        let arn = {
            let s = self.lock();
            let c = s
                .clusters
                .get(cluster)
                .ok_or_else(|| rules::no_cluster(op, cluster))?;
            c.addons.get(name).map(|a| a.arn.clone())
        };
        let resource = arn.unwrap_or_else(|| {
            format!(
                "arn:aws:eks:{}:{}:addon/{cluster}/{name}/*",
                self.config.region, self.config.account_id
            )
        });
        self.authorize(op, "eks:DescribeAddon", &resource, authz::Keys::new())?;
        let s = self.lock();
        Ok(s.clusters
            .get(cluster)
            .and_then(|c| c.addons.get(name))
            .cloned())
    }

    pub(super) fn list_addons_now(&self, op: &str, cluster: &str) -> Result<Vec<String>> {
        self.authorize(
            op,
            "eks:ListAddons",
            &self.cluster_arn(cluster),
            authz::Keys::new(),
        )?;
        let s = self.lock();
        let c = s
            .clusters
            .get(cluster)
            .ok_or_else(|| rules::no_cluster(op, cluster))?;
        Ok(c.addons.keys().cloned().collect())
    }

    pub(super) fn list_roles_now(&self, op: &str, path_prefix: &str) -> Result<Vec<Role>> {
        // ListRoles' PathPrefix: `/` then printable ASCII, 1 to 512 characters.
        if path_prefix.len() > 512
            || !path_prefix.starts_with('/')
            || !path_prefix.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(aws_error(
                op,
                "ValidationError",
                &format!(
                    "1 validation error detected: Value '{path_prefix}' at 'pathPrefix' failed to satisfy constraint: Member must satisfy regular expression pattern: \\u002F[\\u0021-\\u007F]*"
                ),
            ));
        }
        let resource = format!("arn:aws:iam::{}:role{path_prefix}*", self.config.account_id);
        self.authorize(op, "iam:ListRoles", &resource, authz::Keys::new())?;
        let s = self.lock();
        let mut roles: Vec<Role> = s
            .roles
            .values()
            .filter(|r| r.role.path.starts_with(path_prefix))
            .map(|r| Role {
                tags: Default::default(),
                permissions_boundary_arn: None,
                ..r.role.clone()
            })
            .collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(roles)
    }
}

/// IAM's check of a trust policy's `Federated` principals that name an OIDC provider:
/// the account must have it.
pub(super) fn federated_principals_exist(s: &State, op: &str, doc: &Value) -> Result<()> {
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for st in statements {
        let federated = st.get("Principal").and_then(|p| p.get("Federated"));
        let names: Vec<&str> = match federated {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for name in names {
            if name.contains(":oidc-provider/") && !s.oidc_providers.contains(name) {
                return Err(aws_error(
                    op,
                    "MalformedPolicyDocument",
                    &format!("Invalid principal in policy: \"Federated\":\"{name}\""),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::{SimConfig, administrator_policy};
    use pod_identity_aws::{CreateRole, EksApi, IamApi};

    fn sim() -> Arc<AwsSim> {
        let sim = Arc::new(AwsSim::new(SimConfig {
            identity_policy: Some(administrator_policy()),
            ..SimConfig::default()
        }));
        sim.add_cluster("prod");
        sim
    }

    fn irsa_trust(provider: &str) -> Value {
        let host = provider.split(":oidc-provider/").nth(1).unwrap_or_default();
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:sub"): "system:serviceaccount:apps:web",
                format!("{host}:aud"): "sts.amazonaws.com",
            }},
        }]})
    }

    #[tokio::test]
    async fn an_addon_owns_the_associations_eks_makes_for_it() {
        let sim = sim();
        let addon = sim
            .add_addon(
                "prod",
                &AddonSetup {
                    name: "aws-ebs-csi-driver".into(),
                    pod_identity_associations: vec![(
                        "kube-system".into(),
                        "ebs-csi-controller-sa".into(),
                        "arn:aws:iam::111122223333:role/ebs".into(),
                    )],
                    ..AddonSetup::default()
                },
            )
            .expect("add-on");
        assert!(
            addon
                .arn
                .starts_with("arn:aws:eks:us-east-1:111122223333:addon/prod/aws-ebs-csi-driver/")
        );
        let rows = sim
            .list_pod_identity_associations("prod", Some("kube-system"), None)
            .await
            .expect("list");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].owner_arn.as_deref(), Some(addon.arn.as_str()));
        assert_eq!(
            addon.pod_identity_association_arns,
            vec![rows[0].association_arn.clone()]
        );
        let described = sim
            .describe_addon("prod", "aws-ebs-csi-driver")
            .await
            .expect("describe")
            .expect("exists");
        assert_eq!(described, addon);
        assert_eq!(described.status.as_deref(), Some("ACTIVE"));
        assert_eq!(
            sim.describe_addon("prod", "vpc-cni")
                .await
                .expect("describe"),
            None
        );
        assert_eq!(
            sim.list_addons("prod").await.expect("list"),
            vec!["aws-ebs-csi-driver".to_owned()]
        );
        let again = sim
            .add_addon(
                "prod",
                &AddonSetup {
                    name: "other".into(),
                    pod_identity_associations: vec![(
                        "kube-system".into(),
                        "ebs-csi-controller-sa".into(),
                        "arn:aws:iam::111122223333:role/ebs".into(),
                    )],
                    ..AddonSetup::default()
                },
            )
            .expect_err("one association per ServiceAccount");
        assert_eq!(
            again.aws().map(|e| e.code.as_str()),
            Some("ResourceInUseException")
        );
        let missing = sim.list_addons("nope").await.expect_err("no cluster");
        assert_eq!(
            missing.aws().map(|e| e.code.as_str()),
            Some("ResourceNotFoundException")
        );
    }

    #[tokio::test]
    async fn an_irsa_trust_needs_its_oidc_provider() {
        let sim = sim();
        let provider =
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC";
        let input = CreateRole {
            name: "web".into(),
            path: "/".into(),
            assume_role_policy: irsa_trust(provider),
            ..CreateRole::default()
        };
        let err = sim.create_role(&input).await.expect_err("no provider yet");
        let err = err.aws().expect("AWS error").clone();
        assert_eq!(err.code, "MalformedPolicyDocument");
        assert!(
            err.message.contains("Invalid principal in policy"),
            "{}",
            err.message
        );
        let arn = sim.add_oidc_provider("https://oidc.eks.us-east-1.amazonaws.com/id/ABC");
        assert_eq!(arn, provider);
        let role = sim.create_role(&input).await.expect("provider exists");
        assert_eq!(role.assume_role_policy, irsa_trust(provider));
        let other = irsa_trust("arn:aws:iam::111122223333:oidc-provider/example.com/id/X");
        let err = sim
            .update_assume_role_policy("web", &other)
            .await
            .expect_err("unknown provider");
        assert_eq!(
            err.aws().map(|e| e.code.as_str()),
            Some("MalformedPolicyDocument")
        );
    }

    #[tokio::test]
    async fn list_roles_lists_a_path_without_tags() {
        let sim = sim();
        for (name, path) in [
            ("a", "/pod-identity/prod/"),
            ("b", "/pod-identity/prod-eu/"),
            ("c", "/"),
        ] {
            sim.create_role(&CreateRole {
                name: name.into(),
                path: path.into(),
                assume_role_policy: serde_json::json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "pods.eks.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }]}),
                tags: [("k".to_owned(), "v".to_owned())].into(),
                ..CreateRole::default()
            })
            .await
            .expect("role");
        }
        let names = |roles: Vec<Role>| roles.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(sim.list_roles("/pod-identity/prod/").await.expect("list")),
            ["a"]
        );
        assert_eq!(
            names(sim.list_roles("/pod-identity/").await.expect("list")),
            ["a", "b"]
        );
        let all = sim.list_roles("/").await.expect("list");
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|r| r.tags.is_empty()));
        let err = sim
            .list_roles("pod-identity")
            .await
            .expect_err("no leading slash");
        assert_eq!(err.aws().map(|e| e.code.as_str()), Some("ValidationError"));
    }
}
