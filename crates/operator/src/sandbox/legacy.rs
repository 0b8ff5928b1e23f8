//! The identity wiring the sandbox cluster has before the operator, to try `audit` and
//! `migrate` on: namespace `legacy` with two IRSA ServiceAccounts (`cart`, and
//! `checkout`, which also has an association made by hand), their roles trusting only
//! the cluster's OIDC provider, and the `aws-efs-csi-driver` add-on owning the
//! association of `kube-system/efs-csi-controller-sa`.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::{ACCOUNT_ID, CLUSTER, REGION};
use crate::aws::sim::{AddonSetup, AwsSim};
use crate::aws::{CreateAssociation, CreateRole, EksApi, IamApi};

pub const NAMESPACE: &str = "legacy";
/// The IRSA ServiceAccounts of [`NAMESPACE`] and their roles.
pub const IRSA: [(&str, &str); 2] = [("cart", "cart-irsa"), ("checkout", "checkout-irsa")];
/// The add-on whose association EKS made and owns.
pub const ADDON: &str = "aws-efs-csi-driver";
pub const ADDON_ROLE: &str = "efs-csi-driver";

fn issuer() -> String {
    format!("oidc.eks.{REGION}.amazonaws.com/id/5A4D8B0C1E2F3A4B5C6D7E8F9A0B1C2D")
}

pub fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

/// IRSA's trust: the cluster's OIDC provider, for one ServiceAccount.
fn oidc_trust(service_account: &str) -> Value {
    let issuer = issuer();
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{issuer}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{issuer}:sub"): format!("system:serviceaccount:{NAMESPACE}:{service_account}"),
            format!("{issuer}:aud"): "sts.amazonaws.com",
        }},
    }]})
}

/// The AWS side, made as the account's administrator before the operator's policy is
/// enforced.
pub async fn create_in_aws(aws: &AwsSim) -> crate::Result<()> {
    aws.add_oidc_provider(&format!("https://{}", issuer()));
    for (sa, role) in IRSA {
        aws.create_role(&CreateRole {
            name: role.into(),
            path: "/".into(),
            assume_role_policy: oidc_trust(sa),
            description: Some(format!("IRSA role of {NAMESPACE}/{sa}")),
            ..CreateRole::default()
        })
        .await?;
    }
    aws.create_pod_identity_association(&CreateAssociation {
        cluster_name: CLUSTER.into(),
        namespace: NAMESPACE.into(),
        service_account: "checkout".into(),
        role_arn: role_arn("checkout-irsa"),
        ..CreateAssociation::default()
    })
    .await?;
    aws.create_role(&CreateRole {
        name: ADDON_ROLE.into(),
        path: "/".into(),
        assume_role_policy: crate::policy::pod_identity_trust_policy(None),
        ..CreateRole::default()
    })
    .await?;
    aws.add_addon(
        CLUSTER,
        &AddonSetup {
            name: ADDON.into(),
            pod_identity_associations: vec![(
                "kube-system".into(),
                "efs-csi-controller-sa".into(),
                role_arn(ADDON_ROLE),
            )],
            ..AddonSetup::default()
        },
    )?;
    Ok(())
}

/// The Kubernetes side: the namespace and its annotated ServiceAccounts.
pub async fn create_in_kubernetes(client: &kube::Client) -> crate::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    for (sa, role) in IRSA {
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {
                "name": sa, "namespace": NAMESPACE,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn(role)},
            }}))?,
        )
        .await?;
    }
    Ok(())
}
