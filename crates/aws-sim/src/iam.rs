//! The simulator's IAM.

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::grammar::{self, ROLE_INLINE_POLICIES_MAX_CHARS};
use super::{AwsSim, RoleRecord, State, authz, profiles_of, random_id, rules};
use crate::faults::{Service, aws_error};
use pod_identity_aws::Result;
use pod_identity_aws::{AttachedPolicy, CreateRole, IamApi, Role, Tags};

const ROLE_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn role_mut<'a>(s: &'a mut State, op: &str, name: &str) -> Result<&'a mut RoleRecord> {
    rules::role_name(op, name)?;
    s.roles
        .get_mut(&name.to_ascii_lowercase())
        .ok_or_else(|| rules::no_such_role(op, name))
}

fn policy_exists(s: &State, op: &str, arn: &str) -> Result<()> {
    rules::policy_arn(op, arn)?;
    if !s.managed_policies.contains(arn) {
        return Err(aws_error(
            op,
            "NoSuchEntity",
            &format!("Policy {arn} does not exist or is not attachable."),
        ));
    }
    Ok(())
}

fn inline_total(r: &RoleRecord, replacing: &str, doc: &Value) -> usize {
    r.inline
        .iter()
        .filter(|(name, _)| name.as_str() != replacing)
        .map(|(_, d)| grammar::size(d))
        .sum::<usize>()
        + grammar::size(doc)
}

#[async_trait]
impl IamApi for AwsSim {
    async fn create_role(&self, input: &CreateRole) -> Result<Role> {
        const OP: &str = "CreateRole";
        self.call(Service::Iam, OP, || {
            {
                let mut keys = authz::Keys::new().request_tags(&input.tags);
                if let Some(b) = &input.permissions_boundary_arn {
                    keys = keys.string("iam:PermissionsBoundary", b);
                }
                let arn = format!(
                    "arn:aws:iam::{}:role{}{}",
                    self.config.account_id, input.path, input.name
                );
                self.authorize(OP, "iam:CreateRole", &arn, keys)?;
                // A role created with tags is also authorized as iam:TagRole ("Permissions
                // required to tag IAM entities", IAM User Guide, id_tags.html).
                if !input.tags.is_empty() {
                    let tag_keys = authz::Keys::new().request_tags(&input.tags);
                    self.authorize(OP, "iam:TagRole", &arn, tag_keys)?;
                }
            }
            rules::role_name(OP, &input.name)?;
            rules::path(OP, &input.path)?;
            if let Some(d) = &input.description {
                rules::description(OP, d)?;
            }
            if let Some(secs) = input.max_session_duration {
                rules::max_session_duration(OP, secs)?;
            }
            rules::tags(OP, &input.tags)?;
            rules::trust_policy(
                OP,
                &input.assume_role_policy,
                self.config.trust_policy_max_chars,
            )?;
            let now = self.now_utc();
            let mut s = self.lock();
            super::addons::federated_principals_exist(&s, OP, &input.assume_role_policy)?;
            if let Some(arn) = &input.permissions_boundary_arn {
                policy_exists(&s, OP, arn)?;
            }
            let key = input.name.to_ascii_lowercase();
            if s.roles.contains_key(&key) {
                return Err(aws_error(
                    OP,
                    "EntityAlreadyExists",
                    &format!("Role with name {} already exists.", input.name),
                ));
            }
            let role_id = format!("AROA{}", random_id(&mut s.rng, ROLE_ID_ALPHABET, 17));
            let role = Role {
                name: input.name.clone(),
                arn: format!(
                    "arn:aws:iam::{}:role{}{}",
                    self.config.account_id, input.path, input.name
                ),
                role_id,
                path: input.path.clone(),
                description: input.description.clone().filter(|d| !d.is_empty()),
                max_session_duration: input.max_session_duration.unwrap_or(rules::MIN_SESSION),
                assume_role_policy: input.assume_role_policy.clone(),
                permissions_boundary_arn: input.permissions_boundary_arn.clone(),
                tags: input.tags.clone(),
                created: Some(now),
            };
            s.roles.insert(
                key,
                RoleRecord {
                    role: role.clone(),
                    created: Instant::now(),
                    attached: Vec::new(),
                    inline: Default::default(),
                },
            );
            Ok(role)
        })
        .await
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        const OP: &str = "GetRole";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:GetRole", name, authz::Keys::new())?;
            rules::role_name(OP, name)?;
            let s = self.lock();
            Ok(s.roles
                .get(&name.to_ascii_lowercase())
                .map(|r| r.role.clone()))
        })
        .await
    }

    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        const OP: &str = "UpdateRole";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:UpdateRole", name, authz::Keys::new())?;
            if let Some(d) = description {
                rules::description(OP, d)?;
            }
            if let Some(secs) = max_session_duration {
                rules::max_session_duration(OP, secs)?;
            }
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            if let Some(d) = description {
                r.role.description = Some(d.to_owned()).filter(|d| !d.is_empty());
            }
            if let Some(secs) = max_session_duration {
                r.role.max_session_duration = secs;
            }
            Ok(())
        })
        .await
    }

    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        const OP: &str = "UpdateAssumeRolePolicy";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:UpdateAssumeRolePolicy", name, authz::Keys::new())?;
            let mut s = self.lock();
            role_mut(&mut s, OP, name)?;
            rules::trust_policy(OP, document, self.config.trust_policy_max_chars)?;
            super::addons::federated_principals_exist(&s, OP, document)?;
            role_mut(&mut s, OP, name)?.role.assume_role_policy = document.clone();
            Ok(())
        })
        .await
    }

    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        const OP: &str = "PutRolePermissionsBoundary";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:PutRolePermissionsBoundary",
                name,
                authz::Keys::new().string("iam:PermissionsBoundary", policy_arn),
            )?;
            let mut s = self.lock();
            role_mut(&mut s, OP, name)?;
            policy_exists(&s, OP, policy_arn)?;
            role_mut(&mut s, OP, name)?.role.permissions_boundary_arn = Some(policy_arn.to_owned());
            Ok(())
        })
        .await
    }

    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        const OP: &str = "DeleteRolePermissionsBoundary";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:DeleteRolePermissionsBoundary",
                name,
                authz::Keys::new(),
            )?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            r.role.permissions_boundary_arn = None;
            Ok(())
        })
        .await
    }

    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        const OP: &str = "AttachRolePolicy";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:AttachRolePolicy",
                name,
                authz::Keys::new().string("iam:PolicyARN", policy_arn),
            )?;
            let mut s = self.lock();
            role_mut(&mut s, OP, name)?;
            policy_exists(&s, OP, policy_arn)?;
            let r = role_mut(&mut s, OP, name)?;
            if r.attached.iter().any(|a| a == policy_arn) {
                return Ok(());
            }
            if r.attached.len() >= self.config.managed_policies_per_role {
                return Err(aws_error(
                    OP,
                    "LimitExceeded",
                    &format!(
                        "Cannot exceed quota for PoliciesPerRole: {}",
                        self.config.managed_policies_per_role
                    ),
                ));
            }
            r.attached.push(policy_arn.to_owned());
            Ok(())
        })
        .await
    }

    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        const OP: &str = "DetachRolePolicy";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:DetachRolePolicy",
                name,
                authz::Keys::new().string("iam:PolicyARN", policy_arn),
            )?;
            rules::policy_arn(OP, policy_arn)?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            let Some(i) = r.attached.iter().position(|a| a == policy_arn) else {
                return Err(aws_error(
                    OP,
                    "NoSuchEntity",
                    &format!("Policy {policy_arn} was not found."),
                ));
            };
            r.attached.remove(i);
            Ok(())
        })
        .await
    }

    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        const OP: &str = "ListAttachedRolePolicies";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:ListAttachedRolePolicies", name, authz::Keys::new())?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            Ok(r.attached
                .iter()
                .map(|arn| AttachedPolicy {
                    arn: arn.clone(),
                    name: arn.rsplit('/').next().unwrap_or(arn).to_owned(),
                })
                .collect())
        })
        .await
    }

    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        const OP: &str = "PutRolePolicy";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:PutRolePolicy", name, authz::Keys::new())?;
            rules::policy_name(OP, policy_name)?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            rules::identity_policy(OP, document)?;
            if inline_total(r, policy_name, document) > ROLE_INLINE_POLICIES_MAX_CHARS {
                return Err(aws_error(
                    OP,
                    "LimitExceeded",
                    &format!(
                        "Maximum policy size of {} bytes exceeded for role {}",
                        ROLE_INLINE_POLICIES_MAX_CHARS, r.role.name
                    ),
                ));
            }
            r.inline.insert(policy_name.to_owned(), document.clone());
            Ok(())
        })
        .await
    }

    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        const OP: &str = "GetRolePolicy";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:GetRolePolicy", name, authz::Keys::new())?;
            rules::role_name(OP, name)?;
            rules::policy_name(OP, policy_name)?;
            // IAM answers NoSuchEntity both for a missing role and a missing policy; the
            // trait reads both as "no such inline policy".
            let s = self.lock();
            Ok(s.roles
                .get(&name.to_ascii_lowercase())
                .and_then(|r| r.inline.get(policy_name).cloned()))
        })
        .await
    }

    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        const OP: &str = "DeleteRolePolicy";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:DeleteRolePolicy", name, authz::Keys::new())?;
            rules::policy_name(OP, policy_name)?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            if r.inline.remove(policy_name).is_none() {
                return Err(aws_error(
                    OP,
                    "NoSuchEntity",
                    &format!("The role policy with name {policy_name} cannot be found."),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        const OP: &str = "ListRolePolicies";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:ListRolePolicies", name, authz::Keys::new())?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            Ok(r.inline.keys().cloned().collect())
        })
        .await
    }

    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        const OP: &str = "TagRole";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:TagRole",
                name,
                authz::Keys::new().request_tags(tags),
            )?;
            rules::tags(OP, tags)?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            let mut merged = r.role.tags.clone();
            merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            rules::tag_total(OP, merged.len())?;
            r.role.tags = merged;
            Ok(())
        })
        .await
    }

    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        const OP: &str = "UntagRole";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:UntagRole",
                name,
                authz::Keys::new().tag_keys(keys.to_vec()),
            )?;
            let mut s = self.lock();
            let r = role_mut(&mut s, OP, name)?;
            for key in keys {
                r.role.tags.remove(key);
            }
            Ok(())
        })
        .await
    }

    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        const OP: &str = "ListRoleTags";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:ListRoleTags", name, authz::Keys::new())?;
            let mut s = self.lock();
            Ok(role_mut(&mut s, OP, name)?.role.tags.clone())
        })
        .await
    }

    async fn delete_role(&self, name: &str) -> Result<()> {
        const OP: &str = "DeleteRole";
        self.call(Service::Iam, OP, || {
            self.authorize_role(OP, "iam:DeleteRole", name, authz::Keys::new())?;
            let mut s = self.lock();
            let key = name.to_ascii_lowercase();
            let r = role_mut(&mut s, OP, name)?;
            let blocker = if !r.attached.is_empty() {
                Some("Cannot delete entity, must detach all policies first.")
            } else if !r.inline.is_empty() {
                Some("Cannot delete entity, must delete policies first.")
            } else {
                None
            };
            let blocker = blocker.or_else(|| {
                (!profiles_of(&s, &key).is_empty()).then_some(
                    "Cannot delete entity, must remove roles from instance profile first.",
                )
            });
            if let Some(message) = blocker {
                return Err(aws_error(OP, "DeleteConflict", message));
            }
            s.roles.remove(&key);
            Ok(())
        })
        .await
    }

    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        const OP: &str = "ListInstanceProfilesForRole";
        self.call(Service::Iam, OP, || {
            self.authorize_role(
                OP,
                "iam:ListInstanceProfilesForRole",
                name,
                authz::Keys::new(),
            )?;
            let mut s = self.lock();
            role_mut(&mut s, OP, name)?;
            Ok(profiles_of(&s, &name.to_ascii_lowercase()))
        })
        .await
    }

    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        const OP: &str = "ListRoles";
        self.call(Service::Iam, OP, || self.list_roles_now(OP, path_prefix))
            .await
    }
}
