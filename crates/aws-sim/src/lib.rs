//! An in-memory IAM and EKS that follow AWS's documented behaviour, for the controller
//! tests, the sandbox and the benchmarks. It implements the traits of
//! `pod-identity-aws` and depends on nothing else of the operator; [`faults`] injects
//! failures in front of any implementation of them, [`http`] serves the simulator on
//! AWS's wire protocols, and [`authz`] evaluates every call against an identity policy.
//!
//! Implemented (IAM): roles with IAM's name, path, description, session-duration, tag
//! and policy-document rules (the policy grammar and sizes are the simulator's own,
//! [`grammar`], written from AWS's documentation); trust policy size quota; managed policy attachment with the
//! 10-per-role quota against a catalogue of existing policies; inline policies with the
//! 10,240-character total; permissions boundaries; instance profiles (set up through
//! [`AwsSim::add_instance_profile`]) blocking DeleteRole; case-insensitive unique names.
//! (EKS): clusters (set up through [`AwsSim::add_cluster`]); Pod Identity associations
//! with one per ServiceAccount, the role checked to exist in the cluster's account and
//! to be visible only after a propagation window, a deleted association blocking its
//! ServiceAccount for a release window, `clientRequestToken` idempotency, real id and
//! ARN formats, 5,000 per cluster; tags on associations. Quotas that AWS lets accounts
//! raise (trust policy size, managed policies per role, associations per cluster) are
//! [`SimConfig`] fields.
//!
//! Where AWS does not document the answer, the simulator picks one and says so: a
//! `clientRequestToken` reused with other parameters is refused with
//! `InvalidRequestException`, and a token whose association was deleted is spent (the
//! request creates anew).
//!
//! Every call first passes the simulator's [`Knobs`] (latency, throttling, faults, call
//! counters). Time is tokio's: windows elapse with `tokio::time::advance` under a paused
//! clock, or in real time otherwise. [`AwsSim::inventory`] snapshots everything.
//!
//! Not simulated: IAM managed policy documents and versions, instance profile
//! management, role last-used data, EKS clusters' own lifecycle, and paging (the traits
//! return whole lists).

mod addons;
pub mod authz;
mod eks;
pub mod faults;
mod grammar;
pub mod http;
mod iam;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use pod_identity_aws::{Addon, Association, Cluster, Role, Tags};

use crate::faults::{Knobs, Service};

pub use addons::AddonSetup;

/// AWS managed policies the simulator knows from the start (any AWS implementation
/// has these); add others with [`AwsSim::add_managed_policy`].
pub const DEFAULT_MANAGED_POLICIES: [&str; 22] = [
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSNSReadOnlyAccess",
    "arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonRDSReadOnlyAccess",
    "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonRoute53ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonVPCReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
    "arn:aws:iam::aws:policy/PowerUserAccess",
    // Published by AWS for add-ons.
    "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
    "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicyV2",
    "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy",
    "arn:aws:iam::aws:policy/AmazonFSxFullAccess",
    "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonPrometheusRemoteWriteAccess",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
];

/// How the simulated account behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub account_id: String,
    pub region: String,
    /// How long after CreateRole EKS still answers that the role does not exist.
    pub role_propagation: Duration,
    /// How long a deleted association keeps blocking a new one for its ServiceAccount.
    pub association_release: Duration,
    /// Associations per cluster (EKS quota).
    pub max_associations_per_cluster: usize,
    /// Trust policy size per role, whitespace not counted (IAM's `ACLSizePerRole`,
    /// 2,048 by default, raisable to 8,192).
    pub trust_policy_max_chars: usize,
    /// Managed policies per role (IAM's `PoliciesPerRole`, 10 by default, raisable to
    /// 25).
    pub managed_policies_per_role: usize,
    /// Seed for generated ids, so runs are reproducible.
    pub seed: u64,
    /// The caller's identity policy: when set, every IAM and EKS call is authorized
    /// against it as IAM would ([`authz`]), the implicit `iam:PassRole` of association
    /// writes included, and a denied call answers AccessDenied. By default the
    /// operator's shipped policy ([`operator_policy`]); calls inside
    /// [`AwsSim::as_admin`] are not checked (what an administrator set up).
    pub identity_policy: Option<Value>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            role_propagation: Duration::ZERO,
            association_release: Duration::ZERO,
            max_associations_per_cluster: 5000,
            trust_policy_max_chars: grammar::TRUST_POLICY_MAX_CHARS,
            managed_policies_per_role: rules::MANAGED_POLICIES_PER_ROLE,
            seed: 0,
            identity_policy: Some(operator_policy()),
        }
    }
}

/// The operator's shipped IAM policy, `config/iam/operator-policy.json`. Should that
/// file not parse, a policy that allows nothing, so every check fails loudly.
pub fn operator_policy() -> Value {
    serde_json::from_str(include_str!("../../../config/iam/operator-policy.json"))
        .unwrap_or_else(|_| serde_json::json!({"Version": "2012-10-17", "Statement": []}))
}

/// A policy that allows every action on every resource: an account administrator's.
/// Tests of the simulator's own API run under it, so every call still passes through
/// the authorizer.
pub fn administrator_policy() -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    })
}

tokio::task_local! {
    /// Set inside [`AwsSim::as_admin`].
    static ADMIN: ();
}

/// One role with everything attached to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleInventory {
    pub role: Role,
    pub attached_policy_arns: Vec<String>,
    pub inline_policies: BTreeMap<String, Value>,
    pub instance_profiles: Vec<String>,
}

/// Everything the simulated account holds, for tests that check nothing is orphaned or
/// duplicated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub roles: Vec<RoleInventory>,
    pub clusters: Vec<Cluster>,
    pub associations: Vec<Association>,
}

impl Inventory {
    /// The role of that name, compared as IAM does (case-insensitively).
    pub fn role(&self, name: &str) -> Option<&RoleInventory> {
        self.roles
            .iter()
            .find(|r| r.role.name.eq_ignore_ascii_case(name))
    }

    /// Roles carrying this tag.
    pub fn roles_tagged(&self, key: &str, value: &str) -> Vec<&RoleInventory> {
        self.roles
            .iter()
            .filter(|r| r.role.tags.get(key).is_some_and(|v| v == value))
            .collect()
    }

    /// Associations carrying this tag.
    pub fn associations_tagged(&self, key: &str, value: &str) -> Vec<&Association> {
        self.associations
            .iter()
            .filter(|a| a.tags.get(key).is_some_and(|v| v == value))
            .collect()
    }

    /// Associations of one ServiceAccount, over all clusters.
    pub fn associations_for(&self, namespace: &str, service_account: &str) -> Vec<&Association> {
        self.associations
            .iter()
            .filter(|a| a.namespace == namespace && a.service_account == service_account)
            .collect()
    }
}

struct RoleRecord {
    role: Role,
    created: Instant,
    attached: Vec<String>,
    inline: BTreeMap<String, Value>,
}

struct ClusterRecord {
    cluster: Cluster,
    /// By association id, in creation order of ids is not needed: ids are random.
    associations: BTreeMap<String, AssociationRecord>,
    /// ServiceAccounts still blocked by a deleted association: (namespace, name) to the
    /// deleted id and the instant the block ends.
    released: BTreeMap<(String, String), (String, Instant)>,
    /// clientRequestToken to the id it created and a fingerprint of the request.
    tokens: BTreeMap<String, (String, String)>,
    /// Add-ons by name ([`AwsSim::add_addon`]).
    addons: BTreeMap<String, Addon>,
}

struct AssociationRecord {
    association: Association,
    seq: u64,
}

struct State {
    /// Keyed by lower-cased name: IAM names are unique regardless of case.
    roles: BTreeMap<String, RoleRecord>,
    managed_policies: BTreeSet<String>,
    /// Instance profile name to lower-cased role names.
    instance_profiles: BTreeMap<String, BTreeSet<String>>,
    clusters: BTreeMap<String, ClusterRecord>,
    /// ARNs of the account's IAM OIDC identity providers ([`AwsSim::add_oidc_provider`]).
    oidc_providers: BTreeSet<String>,
    rng: StdRng,
    seq: u64,
}

/// The simulator. Implements [`IamApi`](pod_identity_aws::IamApi) and [`EksApi`](pod_identity_aws::EksApi);
/// share it behind an `Arc`.
pub struct AwsSim {
    config: SimConfig,
    /// From `config.identity_policy`; a policy that does not parse denies every call.
    authorizer: std::sync::RwLock<Option<std::result::Result<authz::Authorizer, String>>>,
    /// Every (action, resource, allowed) the authorizer decided, in order, once
    /// [`AwsSim::record_authorizations`] asked for it (`None` before).
    authorized: Mutex<Option<Vec<(String, String, bool)>>>,
    knobs: Arc<Knobs>,
    state: Mutex<State>,
    epoch: (DateTime<Utc>, Instant),
}

impl AwsSim {
    pub fn new(config: SimConfig) -> Self {
        let state = State {
            roles: BTreeMap::new(),
            managed_policies: DEFAULT_MANAGED_POLICIES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            instance_profiles: BTreeMap::new(),
            clusters: BTreeMap::new(),
            oidc_providers: BTreeSet::new(),
            rng: StdRng::seed_from_u64(config.seed),
            seq: 0,
        };
        let authorizer = Self::authorizer_for(&config.account_id, config.identity_policy.as_ref());
        Self {
            config,
            authorizer: std::sync::RwLock::new(authorizer),
            authorized: Mutex::new(None),
            knobs: Knobs::new(),
            state: Mutex::new(state),
            epoch: (Utc::now(), Instant::now()),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Latency, throttling, faults and call counters of this simulator.
    pub fn knobs(&self) -> &Arc<Knobs> {
        &self.knobs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before it can panic; the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one API call's body behind the knobs: counted, delayed, throttled or
    /// failed before it acts, or failed after it acted (an after-effect fault).
    async fn call<T>(
        &self,
        service: Service,
        operation: &str,
        body: impl FnOnce() -> pod_identity_aws::Result<T>,
    ) -> pod_identity_aws::Result<T> {
        let admitted = self.knobs.enter(service, operation).await?;
        admitted.finish(operation, body())
    }

    fn authorizer_for(
        account_id: &str,
        policy: Option<&Value>,
    ) -> Option<std::result::Result<authz::Authorizer, String>> {
        let caller =
            format!("arn:aws:sts::{account_id}:assumed-role/pod-identity-operator/simulator");
        policy.map(|p| authz::Authorizer::new(p, &caller).map_err(|e| e.to_string()))
    }

    /// From now on, authorizes every call against `policy` (or none with `None`): a test
    /// sets up what exists first, as an administrator would, then enforces.
    pub fn enforce(&self, policy: Option<&Value>) {
        let next = Self::authorizer_for(&self.config.account_id, policy);
        *self.authorizer.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// Runs `f` as the account's administrator: its calls to the simulator are not
    /// authorized (setting up what exists before the operator, or changing it behind
    /// the operator's back). Other tasks' calls meanwhile are.
    pub async fn as_admin<F: std::future::Future>(f: F) -> F::Output {
        ADMIN.scope((), f).await
    }

    fn enforcing(&self) -> bool {
        ADMIN.try_with(|_| ()).is_err()
            && self
                .authorizer
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
    }

    /// Authorizes one action of `operation` (see [`SimConfig::identity_policy`]).
    fn authorize(
        &self,
        operation: &str,
        action: &str,
        resource: &str,
        keys: authz::Keys,
    ) -> pod_identity_aws::Result<()> {
        if !self.enforcing() {
            return Ok(());
        }
        let decision = match &*self.authorizer.read().unwrap_or_else(|e| e.into_inner()) {
            None => return Ok(()),
            Some(Ok(a)) => a.check(operation, action, resource, &keys),
            Some(Err(e)) => Err(crate::faults::aws_error(operation, "AccessDenied", e)),
        };
        if let Some(log) = self
            .authorized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            log.push((action.to_owned(), resource.to_owned(), decision.is_ok()));
        }
        decision
    }

    /// From now on, keeps every authorization decided, for [`AwsSim::authorizations`].
    pub fn record_authorizations(&self) {
        self.authorized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Vec::new);
    }

    /// The authorizations decided since [`AwsSim::record_authorizations`]: (action,
    /// resource, allowed), in order.
    pub fn authorizations(&self) -> Vec<(String, String, bool)> {
        self.authorized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Authorizes an action on the role `name`: its ARN (with its path) and tags when it
    /// exists, `role/<name>` otherwise.
    fn authorize_role(
        &self,
        operation: &str,
        action: &str,
        name: &str,
        keys: authz::Keys,
    ) -> pod_identity_aws::Result<()> {
        if !self.enforcing() {
            return Ok(());
        }
        let (arn, tags) = {
            let s = self.lock();
            match s.roles.get(&name.to_ascii_lowercase()) {
                Some(r) => (r.role.arn.clone(), r.role.tags.clone()),
                None => (
                    format!("arn:aws:iam::{}:role/{name}", self.config.account_id),
                    Tags::new(),
                ),
            }
        };
        self.authorize(operation, action, &arn, keys.resource_tags(&tags))
    }

    fn cluster_arn(&self, cluster: &str) -> String {
        format!(
            "arn:aws:eks:{}:{}:cluster/{cluster}",
            self.config.region, self.config.account_id
        )
    }

    /// Authorizes an action on an association (its ARN, and its tags when it exists).
    fn authorize_association(
        &self,
        operation: &str,
        action: &str,
        cluster: &str,
        id: &str,
        keys: authz::Keys,
    ) -> pod_identity_aws::Result<()> {
        if !self.enforcing() {
            return Ok(());
        }
        let tags = {
            let s = self.lock();
            s.clusters
                .get(cluster)
                .and_then(|c| c.associations.get(id))
                .map(|r| r.association.tags.clone())
                .unwrap_or_default()
        };
        let arn = format!(
            "arn:aws:eks:{}:{}:podidentityassociation/{cluster}/{id}",
            self.config.region, self.config.account_id
        );
        self.authorize(operation, action, &arn, keys.resource_tags(&tags))
    }

    /// The `iam:PassRole` EKS checks for the caller when an association is given a role.
    /// Only a role ARN can be passed: anything else is left to EKS's own check of the
    /// parameter, which refuses it as invalid.
    fn authorize_pass_role(
        &self,
        operation: &str,
        role_arn: &str,
        cluster: &str,
    ) -> pod_identity_aws::Result<()> {
        if rules::parse_role_arn(role_arn).is_none() {
            return Ok(());
        }
        let keys = authz::Keys::new()
            .string("iam:PassedToService", "pods.eks.amazonaws.com")
            .string("iam:AssociatedResourceArn", &self.cluster_arn(cluster));
        self.authorize(operation, "iam:PassRole", role_arn, keys)
    }

    /// Wall-clock time that follows tokio's clock.
    fn now_utc(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.epoch.1);
        self.epoch.0 + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    /// Creates a cluster in the simulator's account and returns it.
    pub fn add_cluster(&self, name: &str) -> Cluster {
        let cluster = Cluster {
            name: name.to_owned(),
            arn: format!(
                "arn:aws:eks:{}:{}:cluster/{name}",
                self.config.region, self.config.account_id
            ),
            account_id: self.config.account_id.clone(),
            status: Some("ACTIVE".into()),
        };
        self.lock().clusters.insert(
            name.to_owned(),
            ClusterRecord {
                cluster: cluster.clone(),
                associations: BTreeMap::new(),
                released: BTreeMap::new(),
                tokens: BTreeMap::new(),
                addons: BTreeMap::new(),
            },
        );
        cluster
    }

    /// Removes a cluster and its associations, as if it were deleted behind the
    /// operator's back. Returns whether it existed.
    pub fn remove_cluster(&self, name: &str) -> bool {
        self.lock().clusters.remove(name).is_some()
    }

    /// Makes a managed policy exist, so it can be attached or used as a boundary.
    pub fn add_managed_policy(&self, arn: &str) {
        self.lock().managed_policies.insert(arn.to_owned());
    }

    /// Puts a role into an instance profile (created if missing), which blocks its
    /// deletion as in IAM. Fails like IAM when the role does not exist.
    pub fn add_instance_profile(
        &self,
        profile: &str,
        role_name: &str,
    ) -> pod_identity_aws::Result<()> {
        let mut s = self.lock();
        let key = role_name.to_ascii_lowercase();
        if !s.roles.contains_key(&key) {
            return Err(rules::no_such_role("AddRoleToInstanceProfile", role_name));
        }
        s.instance_profiles
            .entry(profile.to_owned())
            .or_default()
            .insert(key);
        Ok(())
    }

    /// Removes a role from an instance profile.
    pub fn remove_instance_profile(&self, profile: &str, role_name: &str) {
        if let Some(roles) = self.lock().instance_profiles.get_mut(profile) {
            roles.remove(&role_name.to_ascii_lowercase());
        }
    }

    /// Marks an association as owned by an EKS add-on (sets its `ownerArn`), as when an
    /// add-on creates its own associations.
    pub fn set_association_owner(
        &self,
        cluster: &str,
        association_id: &str,
        owner_arn: Option<&str>,
    ) -> bool {
        let mut s = self.lock();
        match s
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.associations.get_mut(association_id))
        {
            Some(rec) => {
                rec.association.owner_arn = owner_arn.map(str::to_owned);
                true
            }
            None => false,
        }
    }

    /// One association as it stands, without passing the knobs (not an API call).
    pub fn peek_association(&self, cluster: &str, association_id: &str) -> Option<Association> {
        self.lock()
            .clusters
            .get(cluster)
            .and_then(|c| c.associations.get(association_id))
            .map(|r| r.association.clone())
    }

    /// A snapshot of every role, cluster and association.
    pub fn inventory(&self) -> Inventory {
        let s = self.lock();
        let roles = s
            .roles
            .iter()
            .map(|(key, r)| RoleInventory {
                role: r.role.clone(),
                attached_policy_arns: r.attached.clone(),
                inline_policies: r.inline.clone(),
                instance_profiles: profiles_of(&s, key),
            })
            .collect();
        let clusters = s.clusters.values().map(|c| c.cluster.clone()).collect();
        let mut associations: Vec<(u64, Association)> = s
            .clusters
            .values()
            .flat_map(|c| c.associations.values())
            .map(|r| (r.seq, r.association.clone()))
            .collect();
        associations.sort_by_key(|(seq, _)| *seq);
        Inventory {
            roles,
            clusters,
            associations: associations.into_iter().map(|(_, a)| a).collect(),
        }
    }
}

fn profiles_of(s: &State, role_key: &str) -> Vec<String> {
    s.instance_profiles
        .iter()
        .filter(|(_, roles)| roles.contains(role_key))
        .map(|(name, _)| name.clone())
        .collect()
}

/// `len` characters drawn from `alphabet`.
fn random_id(rng: &mut StdRng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tests;
