//! The simulator's EKS: clusters and Pod Identity associations.

use async_trait::async_trait;
use tokio::time::Instant;

use super::{AssociationRecord, AwsSim, ClusterRecord, State, authz, random_id, rules};
use crate::faults::{Service, aws_error};
use pod_identity_aws::Result;
use pod_identity_aws::{
    Addon, Association, AssociationSummary, Cluster, CreateAssociation, EksApi, Tags,
    UpdateAssociation,
};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn cluster_mut<'a>(s: &'a mut State, op: &str, name: &str) -> Result<&'a mut ClusterRecord> {
    s.clusters
        .get_mut(name)
        .ok_or_else(|| rules::no_cluster(op, name))
}

impl AwsSim {
    /// EKS's checks of a role ARN given to an association: well formed, same account
    /// as the cluster, and the role visible to EKS (existing, and created longer ago
    /// than the propagation window).
    fn check_role(&self, s: &State, op: &str, cluster: &Cluster, arn: &str) -> Result<()> {
        let Some((account, name)) = rules::parse_role_arn(arn) else {
            return Err(rules::eks_invalid(op, &format!("Invalid role ARN: {arn}")));
        };
        if account != cluster.account_id {
            return Err(rules::eks_invalid(
                op,
                "Cross-account pass role is not allowed",
            ));
        }
        let visible = s.roles.get(&name.to_ascii_lowercase()).is_some_and(|r| {
            r.role.arn == arn
                && Instant::now().saturating_duration_since(r.created)
                    >= self.config.role_propagation
        });
        if !visible {
            return Err(rules::eks_invalid(
                op,
                "Role provided in the request does not exist",
            ));
        }
        Ok(())
    }
}

fn check_target_role(op: &str, arn: &str) -> Result<()> {
    if rules::parse_role_arn(arn).is_none() {
        return Err(rules::eks_invalid(
            op,
            &format!("Invalid target role ARN: {arn}"),
        ));
    }
    Ok(())
}

/// What makes two creations the same request, for `clientRequestToken`.
fn fingerprint(input: &CreateAssociation) -> String {
    let mut without_token = input.clone();
    without_token.client_request_token = None;
    serde_json::to_string(&without_token).unwrap_or_default()
}

fn summary(a: &Association) -> AssociationSummary {
    AssociationSummary {
        cluster_name: a.cluster_name.clone(),
        association_id: a.association_id.clone(),
        association_arn: a.association_arn.clone(),
        namespace: a.namespace.clone(),
        service_account: a.service_account.clone(),
        owner_arn: a.owner_arn.clone(),
    }
}

fn find_by_arn<'a>(s: &'a mut State, arn: &str) -> Option<&'a mut Association> {
    s.clusters
        .values_mut()
        .flat_map(|c| c.associations.values_mut())
        .map(|r| &mut r.association)
        .find(|a| a.association_arn == arn)
}

#[async_trait]
impl EksApi for AwsSim {
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        const OP: &str = "DescribeCluster";
        self.call(Service::Eks, OP, || {
            self.authorize(
                OP,
                "eks:DescribeCluster",
                &self.cluster_arn(name),
                authz::Keys::new(),
            )?;
            Ok(self.lock().clusters.get(name).map(|c| c.cluster.clone()))
        })
        .await
    }

    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        const OP: &str = "CreatePodIdentityAssociation";
        self.call(Service::Eks, OP, || {
        self.authorize(
            OP,
            "eks:CreatePodIdentityAssociation",
            &self.cluster_arn(&input.cluster_name),
            authz::Keys::new().request_tags(&input.tags),
        )?;
        self.authorize_pass_role(OP, &input.role_arn, &input.cluster_name)?;
        let now = self.now_utc();
        let mut guard = self.lock();
        let s = &mut *guard;
        let cluster = cluster_mut(s, OP, &input.cluster_name)?.cluster.clone();
        rules::kubernetes_name(OP, "namespace", &input.namespace)?;
        rules::kubernetes_name(OP, "serviceAccount", &input.service_account)?;

        let print = fingerprint(input);
        if let Some(token) = &input.client_request_token {
            let c = cluster_mut(s, OP, &input.cluster_name)?;
            if let Some((id, earlier)) = c.tokens.get(token).cloned() {
                match c.associations.get(&id) {
                    Some(rec) if earlier == print => return Ok(rec.association.clone()),
                    Some(_) => {
                        return Err(aws_error(
                            OP,
                            "InvalidRequestException",
                            "The client request token was already used with different parameters.",
                        ));
                    }
                    // The association the token made is gone: the token is spent and
                    // this is a new request.
                    None => {
                        c.tokens.remove(token);
                    }
                }
            }
        }

        rules::eks_tags(OP, "InvalidParameterException", &input.tags)?;
        if let Some(p) = &input.session_policy {
            rules::session_policy(OP, p, input.disable_session_tags)?;
        }
        self.check_role(s, OP, &cluster, &input.role_arn)?;
        if let Some(target) = &input.target_role_arn {
            check_target_role(OP, target)?;
        }

        let c = cluster_mut(s, OP, &input.cluster_name)?;
        let sa = (input.namespace.clone(), input.service_account.clone());
        if let Some(rec) = c
            .associations
            .values()
            .find(|r| r.association.namespace == sa.0 && r.association.service_account == sa.1)
        {
            return Err(aws_error(
                OP,
                "ResourceInUseException",
                &format!(
                    "Association already exists: {}",
                    rec.association.association_id
                ),
            ));
        }
        if let Some((old_id, until)) = c.released.get(&sa)
            && Instant::now() < *until
        {
            return Err(aws_error(
                OP,
                "ResourceInUseException",
                &format!("Association already exists: {old_id}"),
            ));
        }
        if c.associations.len() >= self.config.max_associations_per_cluster {
            return Err(aws_error(
                OP,
                "ResourceLimitExceededException",
                &format!(
                    "Cluster {} has reached the limit of {} Pod Identity associations.",
                    input.cluster_name, self.config.max_associations_per_cluster
                ),
            ));
        }

        let id = format!("a-{}", random_id(&mut s.rng, ID_ALPHABET, 17));
        s.seq += 1;
        let seq = s.seq;
        let association = Association {
            cluster_name: input.cluster_name.clone(),
            association_id: id.clone(),
            association_arn: format!(
                "arn:aws:eks:{}:{}:podidentityassociation/{}/{id}",
                self.config.region, cluster.account_id, input.cluster_name
            ),
            namespace: input.namespace.clone(),
            service_account: input.service_account.clone(),
            role_arn: input.role_arn.clone(),
            target_role_arn: input.target_role_arn.clone(),
            disable_session_tags: input.disable_session_tags,
            session_policy: input.session_policy.clone(),
            external_id: input
                .target_role_arn
                .as_ref()
                .map(|_| uuid::Uuid::new_v4().to_string()),
            owner_arn: None,
            tags: input.tags.clone(),
            created_at: Some(now),
            modified_at: Some(now),
        };
        let c = cluster_mut(s, OP, &input.cluster_name)?;
        c.released.remove(&sa);
        if let Some(token) = &input.client_request_token {
            c.tokens.insert(token.clone(), (id.clone(), print));
        }
        c.associations.insert(
            id,
            AssociationRecord {
                association: association.clone(),
                seq,
            },
        );
        Ok(association)
        })
        .await
    }

    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        const OP: &str = "DescribePodIdentityAssociation";
        self.call(Service::Eks, OP, || {
            self.authorize_association(
                OP,
                "eks:DescribePodIdentityAssociation",
                cluster_name,
                association_id,
                authz::Keys::new(),
            )?;
            rules::association_id(OP, association_id)?;
            let mut s = self.lock();
            let c = cluster_mut(&mut s, OP, cluster_name)?;
            Ok(c.associations
                .get(association_id)
                .map(|r| r.association.clone()))
        })
        .await
    }

    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        const OP: &str = "UpdatePodIdentityAssociation";
        self.call(Service::Eks, OP, || {
            self.authorize_association(
                OP,
                "eks:UpdatePodIdentityAssociation",
                &input.cluster_name,
                &input.association_id,
                authz::Keys::new(),
            )?;
            if let Some(role) = &input.role_arn {
                self.authorize_pass_role(OP, role, &input.cluster_name)?;
            }
            rules::association_id(OP, &input.association_id)?;
            let now = self.now_utc();
            let mut guard = self.lock();
            let s = &mut *guard;
            let c = cluster_mut(s, OP, &input.cluster_name)?;
            let cluster = c.cluster.clone();
            let Some(current) = c
                .associations
                .get(&input.association_id)
                .map(|r| r.association.clone())
            else {
                return Err(rules::no_association(OP, &input.association_id));
            };
            let mut next = current;
            if let Some(role) = &input.role_arn {
                self.check_role(s, OP, &cluster, role)?;
                next.role_arn = role.clone();
            }
            if let Some(target) = &input.target_role_arn {
                if let Some(arn) = target {
                    check_target_role(OP, arn)?;
                    if next.external_id.is_none() {
                        next.external_id = Some(uuid::Uuid::new_v4().to_string());
                    }
                }
                next.target_role_arn = target.clone();
            }
            if let Some(disable) = input.disable_session_tags {
                next.disable_session_tags = disable;
            }
            if let Some(p) = &input.session_policy {
                next.session_policy = p.clone();
            }
            if let Some(p) = &next.session_policy {
                rules::session_policy(OP, p, next.disable_session_tags)?;
            }
            next.modified_at = Some(now);
            let c = cluster_mut(s, OP, &input.cluster_name)?;
            if let Some(rec) = c.associations.get_mut(&input.association_id) {
                rec.association = next.clone();
            }
            Ok(next)
        })
        .await
    }

    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        const OP: &str = "DeletePodIdentityAssociation";
        self.call(Service::Eks, OP, || {
            self.authorize_association(
                OP,
                "eks:DeletePodIdentityAssociation",
                cluster_name,
                association_id,
                authz::Keys::new(),
            )?;
            rules::association_id(OP, association_id)?;
            let release = self.config.association_release;
            let mut s = self.lock();
            let c = cluster_mut(&mut s, OP, cluster_name)?;
            let Some(rec) = c.associations.remove(association_id) else {
                return Err(rules::no_association(OP, association_id));
            };
            let a = rec.association;
            if !release.is_zero() {
                c.released.insert(
                    (a.namespace, a.service_account),
                    (a.association_id, Instant::now() + release),
                );
            }
            c.tokens.retain(|_, (id, _)| id != association_id);
            Ok(())
        })
        .await
    }

    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        const OP: &str = "ListPodIdentityAssociations";
        self.call(Service::Eks, OP, || {
            self.authorize(
                OP,
                "eks:ListPodIdentityAssociations",
                &self.cluster_arn(cluster_name),
                authz::Keys::new(),
            )?;
            let mut s = self.lock();
            let c = cluster_mut(&mut s, OP, cluster_name)?;
            let mut rows: Vec<&AssociationRecord> = c
                .associations
                .values()
                .filter(|r| namespace.is_none_or(|n| r.association.namespace == n))
                .filter(|r| service_account.is_none_or(|n| r.association.service_account == n))
                .collect();
            rows.sort_by_key(|r| r.seq);
            Ok(rows.into_iter().map(|r| summary(&r.association)).collect())
        })
        .await
    }

    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        const OP: &str = "TagResource";
        self.call(Service::Eks, OP, || {
            self.authorize(
                OP,
                "eks:TagResource",
                arn,
                authz::Keys::new().request_tags(tags),
            )?;
            rules::eks_tags(OP, "BadRequestException", tags)?;
            let mut s = self.lock();
            let Some(a) = find_by_arn(&mut s, arn) else {
                return Err(aws_error(
                    OP,
                    "NotFoundException",
                    &format!("Resource not found: {arn}"),
                ));
            };
            let mut merged = a.tags.clone();
            merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            rules::eks_tags(OP, "BadRequestException", &merged)?;
            a.tags = merged;
            Ok(())
        })
        .await
    }

    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        const OP: &str = "UntagResource";
        self.call(Service::Eks, OP, || {
            self.authorize(
                OP,
                "eks:UntagResource",
                arn,
                authz::Keys::new().tag_keys(keys.to_vec()),
            )?;
            let mut s = self.lock();
            let Some(a) = find_by_arn(&mut s, arn) else {
                return Err(aws_error(
                    OP,
                    "NotFoundException",
                    &format!("Resource not found: {arn}"),
                ));
            };
            for key in keys {
                a.tags.remove(key);
            }
            Ok(())
        })
        .await
    }

    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        const OP: &str = "DescribeAddon";
        self.call(Service::Eks, OP, || {
            self.describe_addon_now(OP, cluster_name, addon_name)
        })
        .await
    }

    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        const OP: &str = "ListAddons";
        self.call(Service::Eks, OP, || self.list_addons_now(OP, cluster_name))
            .await
    }
}
