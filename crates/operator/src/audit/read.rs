//! Reading a cluster's identity wiring for the audit, with reads only.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::aws::{EksApi, IamApi};
use crate::crd::PodIdentityBinding;
use crate::guardrails::IRSA_ROLE_ANNOTATION;
use crate::naming;
use crate::{Error, Result};

use super::model::{AGENT_NAME, AGENT_NAMESPACE, IrsaServiceAccount, Observed, Selection};

/// Reads everything the audit needs; only reads.
pub async fn observe(
    client: &Client,
    iam: &dyn IamApi,
    eks: &dyn EksApi,
    cluster_name: &str,
    selection: &Selection,
) -> Result<Observed> {
    let cluster = eks
        .describe_cluster(cluster_name)
        .await?
        .ok_or_else(|| Error::AwsAnswer {
            operation: "DescribeCluster".into(),
            message: format!("no EKS cluster named {cluster_name} in this account and region"),
        })?;
    let bindings: Api<PodIdentityBinding> = Api::all(client.clone());
    let bindings = bindings.list(&ListParams::default()).await?.items;

    let sas: Api<ServiceAccount> = match &selection.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = ListParams::default();
    if let Some(sel) = &selection.selector {
        params = params.labels(sel);
    }
    let irsa_service_accounts: Vec<IrsaServiceAccount> = sas
        .list(&params)
        .await?
        .items
        .into_iter()
        .filter_map(|sa| {
            let role_arn = sa
                .annotations()
                .get(IRSA_ROLE_ANNOTATION)?
                .trim()
                .to_owned();
            Some(IrsaServiceAccount {
                namespace: sa.namespace().unwrap_or_default(),
                name: sa.name_any(),
                role_arn,
                labels: sa.labels().clone(),
            })
        })
        .collect();

    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let agent_daemonset = match daemonsets.get_opt(AGENT_NAME).await {
        Ok(found) => found.is_some(),
        // A server without DaemonSets, or a caller not allowed to read them, shows
        // none; the add-on may still run the agent.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => false,
        Err(e) => return Err(e.into()),
    };

    let mut associations = Vec::new();
    for row in eks
        .list_pod_identity_associations(cluster_name, None, None)
        .await?
    {
        if let Some(a) = eks
            .describe_pod_identity_association(cluster_name, &row.association_id)
            .await?
        {
            associations.push(a);
        }
    }

    let mut addons = Vec::new();
    for name in eks.list_addons(cluster_name).await? {
        if let Some(a) = eks.describe_addon(cluster_name, &name).await? {
            addons.push(a);
        }
    }

    let mut operator_path_roles = iam.list_roles(&naming::role_path(cluster_name)).await?;
    for role in &mut operator_path_roles {
        role.tags = iam.list_role_tags(&role.name).await?;
    }

    let wanted: BTreeSet<String> = associations
        .iter()
        .map(|a| a.role_arn.clone())
        .chain(irsa_service_accounts.iter().map(|s| s.role_arn.clone()))
        .chain(
            addons
                .iter()
                .filter_map(|a| a.service_account_role_arn.clone()),
        )
        .collect();
    let mut roles = BTreeMap::new();
    for arn in wanted {
        let Some(parsed) = naming::parse_role_arn(&arn) else {
            continue;
        };
        if parsed.account_id != cluster.account_id {
            continue;
        }
        let role = iam.get_role(&parsed.name).await?;
        // A role of that name on another path is not the role the ARN names.
        roles.insert(arn.clone(), role.filter(|r| r.arn == arn));
    }

    Ok(Observed {
        cluster_name: cluster_name.to_owned(),
        cluster_arn: cluster.arn,
        account_id: cluster.account_id,
        bindings,
        irsa_service_accounts,
        associations,
        addons,
        operator_path_roles,
        roles,
        agent_daemonset,
    })
}
