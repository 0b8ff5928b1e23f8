//! [`IamApi`] over `aws-sdk-iam`.
//!
//! Every list call follows its pages to the end. Policy documents go out as compact JSON
//! and come back URL-encoded (CreateRole, GetRole, GetRolePolicy); they are decoded into
//! [`serde_json::Value`] by [`decode_policy`], so no caller ever compares them as
//! strings. Errors go through [`classify`]; get calls answer `None` for what does not
//! exist, as their trait docs say.
//!
//! Not here: retries beyond the SDK's own, and any caching.

use async_trait::async_trait;
use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::classify::{classify, none_if_not_found};
use super::{AttachedPolicy, CreateRole, IamApi, Role, Tags};
use crate::decode_policy;
use crate::{Error, Result};

/// IAM through the SDK client.
#[derive(Clone, Debug)]
pub struct SdkIam {
    client: Client,
}

impl SdkIam {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        SdkIam {
            client: Client::new(config),
        }
    }

    /// Wraps a client built elsewhere (with interceptors, say).
    pub fn from_client(client: Client) -> Self {
        SdkIam { client }
    }
}

fn answer_error(operation: &str, message: impl Into<String>) -> Error {
    Error::AwsAnswer {
        operation: operation.to_string(),
        message: message.into(),
    }
}

fn to_tags(tags: &Tags) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| answer_error("Tag", e.to_string()))
        })
        .collect()
}

fn from_tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn role_from_sdk(operation: &str, role: &aws_sdk_iam::types::Role) -> Result<Role> {
    let encoded = role
        .assume_role_policy_document()
        .ok_or_else(|| answer_error(operation, "role without trust policy"))?;
    let assume_role_policy = decode_policy(encoded).map_err(|e| {
        answer_error(
            operation,
            format!("trust policy of {} is not JSON: {e}", role.role_name()),
        )
    })?;
    Ok(Role {
        name: role.role_name().to_string(),
        arn: role.arn().to_string(),
        role_id: role.role_id().to_string(),
        path: role.path().to_string(),
        description: role.description().map(str::to_string),
        // IAM omits it only for roles made before the setting existed.
        max_session_duration: role.max_session_duration().unwrap_or(3600),
        assume_role_policy,
        permissions_boundary_arn: role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
        tags: from_tags(role.tags()),
        created: to_chrono(role.create_date()),
    })
}

#[async_trait]
impl IamApi for SdkIam {
    async fn create_role(&self, input: &CreateRole) -> Result<Role> {
        const OP: &str = "CreateRole";
        let mut req = self
            .client
            .create_role()
            .role_name(&input.name)
            .path(&input.path)
            .assume_role_policy_document(input.assume_role_policy.to_string())
            .set_description(input.description.clone())
            .set_max_session_duration(input.max_session_duration)
            .set_permissions_boundary(input.permissions_boundary_arn.clone());
        if !input.tags.is_empty() {
            req = req.set_tags(Some(to_tags(&input.tags)?));
        }
        let out = req.send().await.map_err(|e| classify(OP, &e))?;
        let role = out
            .role()
            .ok_or_else(|| answer_error(OP, "no role in the answer"))?;
        role_from_sdk(OP, role)
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        const OP: &str = "GetRole";
        match self.client.get_role().role_name(name).send().await {
            Ok(out) => match out.role() {
                Some(role) => Ok(Some(role_from_sdk(OP, role)?)),
                None => Err(answer_error(OP, "no role in the answer")),
            },
            Err(e) => none_if_not_found(classify(OP, &e)),
        }
    }

    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        self.client
            .update_role()
            .role_name(name)
            .set_description(description.map(str::to_string))
            .set_max_session_duration(max_session_duration)
            .send()
            .await
            .map_err(|e| classify("UpdateRole", &e))?;
        Ok(())
    }

    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        self.client
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(document.to_string())
            .send()
            .await
            .map_err(|e| classify("UpdateAssumeRolePolicy", &e))?;
        Ok(())
    }

    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.client
            .put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(policy_arn)
            .send()
            .await
            .map_err(|e| classify("PutRolePermissionsBoundary", &e))?;
        Ok(())
    }

    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        self.client
            .delete_role_permissions_boundary()
            .role_name(name)
            .send()
            .await
            .map_err(|e| classify("DeleteRolePermissionsBoundary", &e))?;
        Ok(())
    }

    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.client
            .attach_role_policy()
            .role_name(name)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| classify("AttachRolePolicy", &e))?;
        Ok(())
    }

    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.client
            .detach_role_policy()
            .role_name(name)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| classify("DetachRolePolicy", &e))?;
        Ok(())
    }

    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        const OP: &str = "ListAttachedRolePolicies";
        let mut pages = self
            .client
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .send();
        let mut policies = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            for p in page.attached_policies() {
                policies.push(AttachedPolicy {
                    arn: p.policy_arn().unwrap_or_default().to_string(),
                    name: p.policy_name().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(policies)
    }

    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        self.client
            .put_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .policy_document(document.to_string())
            .send()
            .await
            .map_err(|e| classify("PutRolePolicy", &e))?;
        Ok(())
    }

    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        const OP: &str = "GetRolePolicy";
        let out = match self
            .client
            .get_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return none_if_not_found(classify(OP, &e)),
        };
        let document = decode_policy(out.policy_document()).map_err(|e| {
            answer_error(
                OP,
                format!("policy {policy_name} of {name} is not JSON: {e}"),
            )
        })?;
        Ok(Some(document))
    }

    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        self.client
            .delete_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .send()
            .await
            .map_err(|e| classify("DeleteRolePolicy", &e))?;
        Ok(())
    }

    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        const OP: &str = "ListRolePolicies";
        let mut pages = self
            .client
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            names.extend(page.policy_names().iter().cloned());
        }
        Ok(names)
    }

    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        self.client
            .tag_role()
            .role_name(name)
            .set_tags(Some(to_tags(tags)?))
            .send()
            .await
            .map_err(|e| classify("TagRole", &e))?;
        Ok(())
    }

    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        self.client
            .untag_role()
            .role_name(name)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| classify("UntagRole", &e))?;
        Ok(())
    }

    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        const OP: &str = "ListRoleTags";
        let mut pages = self
            .client
            .list_role_tags()
            .role_name(name)
            .into_paginator()
            .send();
        let mut tags = Tags::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            tags.extend(from_tags(page.tags()));
        }
        Ok(tags)
    }

    async fn delete_role(&self, name: &str) -> Result<()> {
        self.client
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| classify("DeleteRole", &e))?;
        Ok(())
    }

    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        const OP: &str = "ListInstanceProfilesForRole";
        let mut pages = self
            .client
            .list_instance_profiles_for_role()
            .role_name(name)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            names.extend(
                page.instance_profiles()
                    .iter()
                    .map(|p| p.instance_profile_name().to_string()),
            );
        }
        Ok(names)
    }

    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        const OP: &str = "ListRoles";
        let mut pages = self
            .client
            .list_roles()
            .path_prefix(path_prefix)
            .into_paginator()
            .send();
        let mut roles = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(OP, &e))?;
            for r in page.roles() {
                roles.push(role_from_sdk(OP, r)?);
            }
        }
        Ok(roles)
    }
}
