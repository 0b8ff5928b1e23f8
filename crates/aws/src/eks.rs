//! [`EksApi`] over `aws-sdk-eks`.
//!
//! The session policy travels as a JSON string on the wire and as a parsed
//! [`serde_json::Value`] here. Empty strings, which EKS (and ministack) send for unset
//! `ownerArn`, `externalId`, `targetRoleArn` and `policy`, become `None`. Listing follows
//! `nextToken` to the last page. On update, a target role or session policy to clear is
//! sent as an empty string, as eksctl does; that is not checked against EKS itself here
//! (ministack ignores empty strings, so only the simulator shows the clearing).
//!
//! Not here: retries beyond the SDK's own, and any caching.

use async_trait::async_trait;
use aws_sdk_eks::Client;
use aws_sdk_eks::types::PodIdentityAssociation;
use serde_json::Value;

use super::classify::{classify, none_if_not_found};
use super::{
    Addon, Association, AssociationSummary, Cluster, CreateAssociation, EksApi, Tags,
    UpdateAssociation,
};
use crate::{Error, Result};

/// EKS through the SDK client.
#[derive(Clone, Debug)]
pub struct SdkEks {
    client: Client,
}

impl SdkEks {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        SdkEks {
            client: Client::new(config),
        }
    }

    /// Wraps a client built elsewhere (with interceptors, say).
    pub fn from_client(client: Client) -> Self {
        SdkEks { client }
    }
}

fn answer_error(operation: &str, message: impl Into<String>) -> Error {
    Error::AwsAnswer {
        operation: operation.to_string(),
        message: message.into(),
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The account id field of an ARN (`arn:partition:service:region:account:resource`).
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

fn association_from_sdk(operation: &str, a: &PodIdentityAssociation) -> Result<Association> {
    let required = |field: Option<&str>, name: &str| {
        field
            .map(str::to_string)
            .ok_or_else(|| answer_error(operation, format!("association without {name}")))
    };
    let session_policy = match non_empty(a.policy()) {
        None => None,
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| answer_error(operation, format!("session policy is not JSON: {e}")))?,
        ),
    };
    Ok(Association {
        cluster_name: required(a.cluster_name(), "clusterName")?,
        association_id: required(a.association_id(), "associationId")?,
        association_arn: required(a.association_arn(), "associationArn")?,
        namespace: required(a.namespace(), "namespace")?,
        service_account: required(a.service_account(), "serviceAccount")?,
        role_arn: required(a.role_arn(), "roleArn")?,
        target_role_arn: non_empty(a.target_role_arn()),
        disable_session_tags: a.disable_session_tags().unwrap_or(false),
        session_policy,
        external_id: non_empty(a.external_id()),
        owner_arn: non_empty(a.owner_arn()),
        tags: a
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        created_at: a.created_at().and_then(to_chrono),
        modified_at: a.modified_at().and_then(to_chrono),
    })
}

fn answered_association(
    operation: &str,
    association: Option<&PodIdentityAssociation>,
) -> Result<Association> {
    let a = association.ok_or_else(|| answer_error(operation, "no association in the answer"))?;
    association_from_sdk(operation, a)
}

#[async_trait]
impl EksApi for SdkEks {
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        const OP: &str = "DescribeCluster";
        let out = match self.client.describe_cluster().name(name).send().await {
            Ok(out) => out,
            Err(e) => return none_if_not_found(classify(OP, &e)),
        };
        let cluster = out
            .cluster()
            .ok_or_else(|| answer_error(OP, "no cluster in the answer"))?;
        let arn = cluster
            .arn()
            .ok_or_else(|| answer_error(OP, "cluster without ARN"))?;
        let account_id = account_of_arn(arn)
            .ok_or_else(|| answer_error(OP, format!("no account in cluster ARN {arn}")))?;
        Ok(Some(Cluster {
            name: cluster.name().unwrap_or(name).to_string(),
            arn: arn.to_string(),
            account_id: account_id.to_string(),
            status: cluster.status().map(|s| s.as_str().to_string()),
        }))
    }

    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        const OP: &str = "CreatePodIdentityAssociation";
        let mut req = self
            .client
            .create_pod_identity_association()
            .cluster_name(&input.cluster_name)
            .namespace(&input.namespace)
            .service_account(&input.service_account)
            .role_arn(&input.role_arn)
            .set_target_role_arn(input.target_role_arn.clone())
            .set_policy(input.session_policy.as_ref().map(Value::to_string))
            .set_client_request_token(input.client_request_token.clone());
        // Sent only when set, as the console and CLI do.
        if input.disable_session_tags {
            req = req.disable_session_tags(true);
        }
        if !input.tags.is_empty() {
            req = req.set_tags(Some(input.tags.clone().into_iter().collect()));
        }
        let out = req.send().await.map_err(|e| classify(OP, &e))?;
        answered_association(OP, out.association())
    }

    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        const OP: &str = "DescribePodIdentityAssociation";
        match self
            .client
            .describe_pod_identity_association()
            .cluster_name(cluster_name)
            .association_id(association_id)
            .send()
            .await
        {
            Ok(out) => answered_association(OP, out.association()).map(Some),
            Err(e) => none_if_not_found(classify(OP, &e)),
        }
    }

    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        const OP: &str = "UpdatePodIdentityAssociation";
        let target_role_arn = input
            .target_role_arn
            .as_ref()
            .map(|t| t.clone().unwrap_or_default());
        let policy = input
            .session_policy
            .as_ref()
            .map(|p| p.as_ref().map(Value::to_string).unwrap_or_default());
        let out = self
            .client
            .update_pod_identity_association()
            .cluster_name(&input.cluster_name)
            .association_id(&input.association_id)
            .set_role_arn(input.role_arn.clone())
            .set_target_role_arn(target_role_arn)
            .set_disable_session_tags(input.disable_session_tags)
            .set_policy(policy)
            .set_client_request_token(input.client_request_token.clone())
            .send()
            .await
            .map_err(|e| classify(OP, &e))?;
        answered_association(OP, out.association())
    }

    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        self.client
            .delete_pod_identity_association()
            .cluster_name(cluster_name)
            .association_id(association_id)
            .send()
            .await
            .map_err(|e| classify("DeletePodIdentityAssociation", &e))?;
        Ok(())
    }

    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        const OP: &str = "ListPodIdentityAssociations";
        let mut pages = self
            .client
            .list_pod_identity_associations()
            .cluster_name(cluster_name)
            .set_namespace(namespace.map(str::to_string))
            .set_service_account(service_account.map(str::to_string))
            .into_paginator()
            .send();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            for s in page.associations() {
                let field = |v: Option<&str>| v.unwrap_or_default().to_string();
                rows.push(AssociationSummary {
                    cluster_name: field(s.cluster_name()),
                    association_id: field(s.association_id()),
                    association_arn: field(s.association_arn()),
                    namespace: field(s.namespace()),
                    service_account: field(s.service_account()),
                    owner_arn: non_empty(s.owner_arn()),
                });
            }
        }
        Ok(rows)
    }

    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        self.client
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| classify("TagResource", &e))?;
        Ok(())
    }

    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.client
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| classify("UntagResource", &e))?;
        Ok(())
    }

    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        const OP: &str = "DescribeAddon";
        let out = match self
            .client
            .describe_addon()
            .cluster_name(cluster_name)
            .addon_name(addon_name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return none_if_not_found(classify(OP, &e)),
        };
        let a = out
            .addon()
            .ok_or_else(|| answer_error(OP, "no add-on in the answer"))?;
        Ok(Some(Addon {
            cluster_name: a.cluster_name().unwrap_or(cluster_name).to_string(),
            name: a.addon_name().unwrap_or(addon_name).to_string(),
            arn: a.addon_arn().unwrap_or_default().to_string(),
            status: a.status().map(|s| s.as_str().to_string()),
            version: non_empty(a.addon_version()),
            service_account_role_arn: non_empty(a.service_account_role_arn()),
            pod_identity_association_arns: a.pod_identity_associations().to_vec(),
        }))
    }

    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        const OP: &str = "ListAddons";
        let mut pages = self
            .client
            .list_addons()
            .cluster_name(cluster_name)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            names.extend(page.addons().iter().cloned());
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_is_the_fifth_field_of_an_arn() {
        assert_eq!(
            account_of_arn("arn:aws:eks:us-east-1:111122223333:cluster/prod"),
            Some("111122223333")
        );
        assert_eq!(account_of_arn("arn:aws:eks:us-east-1::cluster/x"), None);
        assert_eq!(account_of_arn("not-an-arn"), None);
    }
}
