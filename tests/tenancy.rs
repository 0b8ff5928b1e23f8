//! Tenants sharing one AWS account: clusters whose names, namespaces and binding names
//! run into each other never share a role; a binding deleted under `deletionPolicy:
//! Retain` leaves its ServiceAccount for the association it keeps; a binding whose role
//! got a guardrail's name prefix and never reached the status still has that role
//! removed when it is deleted. The AWS side is the simulator; each case runs on kubesim
//! and on a real kube-apiserver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use pod_identity_operator::aws::faults::Fault;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{
    Association, AssociationSummary, Cluster, CreateAssociation, EksApi, IamApi, Result, Tags,
    UpdateAssociation,
};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use pod_identity_operator::naming;
use serde_json::{Value, json};

mod support;

use support::apiserver::{self, ApiServer, Running};
use support::{Env, NS, WAIT, ready};

const ACCOUNT: &str = "111122223333";

fn binding(ns: &str, name: &str, spec: Value) -> PodIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .expect("binding")
}

async fn create_in(client: &Client, ns: &str, name: &str, spec: Value) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(ns)
        .await
        .expect("get namespace")
        .is_none()
    {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
            )
            .await
            .expect("namespace created");
    }
    Api::<PodIdentityBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding(ns, name, spec))
        .await
        .expect("binding created");
}

/// Waits for the binding `ns/name` to be Ready for its generation and returns it.
async fn converged_in(client: &Client, ns: &str, name: &str) -> PodIdentityBinding {
    let api: Api<PodIdentityBinding> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + WAIT;
    loop {
        let b = api.get_opt(name).await.expect("get binding");
        if let Some(b) = &b
            && ready(b).is_some_and(|c| {
                c.status == "True" && c.observed_generation == b.metadata.generation
            })
        {
            return b.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} never Ready: {:?}",
            b.and_then(|b| b.status)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The controller for `cluster` on an API server of its own (`server`), watching every
/// namespace.
async fn operator_of(
    server: ApiServer,
    cluster: &str,
    iam: Arc<dyn IamApi>,
    eks: Arc<dyn EksApi>,
    tune: impl FnOnce(&mut pod_identity_operator::controller::Settings),
) -> Running {
    apiserver::start(server, cluster, iam, eks, tune).await
}

fn role_name_of(b: &PodIdentityBinding) -> String {
    let arn = b
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .expect("status.roleArn");
    naming::parse_role_arn(&arn).expect("a role ARN").name
}

crate::both!(
    names_that_run_into_each_other_get_roles_of_their_own,
    names_that_run_into_each_other_get_roles_of_their_own_on_a_real_apiserver,
    names_running_into_each_other
);

/// Clusters `prod` and `prod-eu` of one account, and in `prod` two namespaces and names
/// that join with dashes into the same string: four bindings, four roles, each tagged
/// for its own cluster, all Ready.
async fn names_running_into_each_other(server: ApiServer) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let prod = aws.add_cluster("prod");
    let prod_eu = aws.add_cluster("prod-eu");
    let a = operator_of(server, "prod", aws.clone(), aws.clone(), |_| {}).await;
    let b = operator_of(server, "prod-eu", aws.clone(), aws.clone(), |_| {}).await;

    let in_prod = [("team-a", "b-x"), ("team-a-b", "x"), ("eu-team", "app")];
    for (ns, name) in in_prod {
        create_in(&a.client, ns, name, json!({})).await;
    }
    create_in(&b.client, "team", "app", json!({})).await;

    let mut roles = Vec::new();
    for (ns, name) in in_prod {
        let bound = converged_in(&a.client, ns, name).await;
        roles.push((prod.arn.clone(), ns, name, role_name_of(&bound)));
    }
    let bound = converged_in(&b.client, "team", "app").await;
    roles.push((prod_eu.arn.clone(), "team", "app", role_name_of(&bound)));

    let inv = aws.inventory();
    assert_eq!(inv.roles.len(), 4, "{:#?}", inv.roles);
    for (cluster_arn, ns, name, role) in &roles {
        let r = inv.role(role).expect("the role exists");
        assert!(
            naming::owned_by(&r.role.tags, cluster_arn, ns, name),
            "{role}: {:?}",
            r.role.tags
        );
        assert_eq!(*role, naming::default_role_name(cluster_arn, ns, name));
        let assocs = inv.associations_for(ns, name);
        assert_eq!(assocs.len(), 1, "{ns}/{name}");
        assert!(assocs[0].role_arn.ends_with(&format!("/{role}")));
    }
    a.stop().await;
    b.stop().await;
}

/// EKS of another region, on the simulator: the cluster `name` there is the simulator's
/// cluster `local`, described with the other region's ARN.
struct OtherRegion {
    sim: Arc<AwsSim>,
    name: String,
    local: String,
    arn: String,
}

impl OtherRegion {
    fn cluster<'a>(&'a self, name: &'a str) -> &'a str {
        if name == self.name { &self.local } else { name }
    }

    fn back(&self, mut a: Association) -> Association {
        if a.cluster_name == self.local {
            a.cluster_name = self.name.clone();
        }
        a
    }
}

#[async_trait]
impl EksApi for OtherRegion {
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        let found = self.sim.describe_cluster(self.cluster(name)).await?;
        Ok(found.map(|c| Cluster {
            name: name.to_owned(),
            arn: self.arn.clone(),
            ..c
        }))
    }
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        let input = CreateAssociation {
            cluster_name: self.cluster(&input.cluster_name).to_owned(),
            ..input.clone()
        };
        Ok(self.back(self.sim.create_pod_identity_association(&input).await?))
    }
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        let found = self
            .sim
            .describe_pod_identity_association(self.cluster(cluster_name), association_id)
            .await?;
        Ok(found.map(|a| self.back(a)))
    }
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        let input = UpdateAssociation {
            cluster_name: self.cluster(&input.cluster_name).to_owned(),
            ..input.clone()
        };
        Ok(self.back(self.sim.update_pod_identity_association(&input).await?))
    }
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        self.sim
            .delete_pod_identity_association(self.cluster(cluster_name), association_id)
            .await
    }
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        let list = self
            .sim
            .list_pod_identity_associations(self.cluster(cluster_name), namespace, service_account)
            .await?;
        Ok(list
            .into_iter()
            .map(|s| AssociationSummary {
                cluster_name: cluster_name.to_owned(),
                ..s
            })
            .collect())
    }
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        self.sim.tag_resource(arn, tags).await
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.sim.untag_resource(arn, keys).await
    }
}

crate::both!(
    clusters_of_one_name_in_two_regions_never_manage_each_others_roles,
    clusters_of_one_name_in_two_regions_never_manage_each_others_roles_on_a_real_apiserver,
    namesake_clusters_in_two_regions
);

/// Two clusters named `prod` in two regions of one account share IAM: each makes its
/// own role for the same namespace and binding name, and deleting one binding leaves
/// the other cluster's role alone.
async fn namesake_clusters_in_two_regions(server: ApiServer) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let east_arn = aws.add_cluster("prod").arn;
    aws.add_cluster("prod-in-us-west-2");
    let west_arn = format!("arn:aws:eks:us-west-2:{ACCOUNT}:cluster/prod");
    let west = Arc::new(OtherRegion {
        sim: aws.clone(),
        name: "prod".into(),
        local: "prod-in-us-west-2".into(),
        arn: west_arn.clone(),
    });
    let a = operator_of(server, "prod", aws.clone(), aws.clone(), |_| {}).await;
    let b = operator_of(server, "prod", aws.clone(), west, |_| {}).await;
    a.apply("app", json!({})).await;
    let in_east = a.wait_converged("app").await;
    b.apply("app", json!({})).await;
    let in_west = b.wait_converged("app").await;

    let (east_role, west_role) = (role_name_of(&in_east), role_name_of(&in_west));
    assert_ne!(east_role.to_lowercase(), west_role.to_lowercase());
    let inv = aws.inventory();
    let tags = |name: &str| inv.role(name).expect("role").role.tags.clone();
    assert!(naming::owned_by(&tags(&east_role), &east_arn, NS, "app"));
    assert!(naming::owned_by(&tags(&west_role), &west_arn, NS, "app"));
    assert!(!naming::owned_by(&tags(&east_role), &west_arn, NS, "app"));
    assert_eq!(inv.associations_for(NS, "app").len(), 2);

    b.delete("app").await;
    b.wait_gone("app").await;
    let inv = aws.inventory();
    assert!(
        inv.role(&west_role).is_none(),
        "the west binding's role is removed"
    );
    let kept = inv.role(&east_role).expect("the east binding's role stays");
    assert!(naming::owned_by(&kept.role.tags, &east_arn, NS, "app"));
    let left = inv.associations_for(NS, "app");
    assert_eq!(left.len(), 1);
    assert!(left[0].role_arn.ends_with(&format!("/{east_role}")));
    a.stop().await;
    b.stop().await;
}

crate::both!(
    a_role_tagged_for_a_namesake_cluster_is_a_conflict,
    a_role_tagged_for_a_namesake_cluster_is_a_conflict_on_a_real_apiserver,
    namesake_role_conflict
);

/// A role under this cluster's name whose tags name a cluster of the same name elsewhere
/// is not this binding's: `RoleConflict`, and it is left as it is.
async fn namesake_role_conflict(server: ApiServer) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let prod = aws.add_cluster("prod");
    let namesake = format!("arn:aws:eks:eu-west-1:{ACCOUNT}:cluster/prod");
    let name = naming::default_role_name(&prod.arn, NS, "app");
    AwsSim::as_admin(async {
        aws.create_role(&pod_identity_operator::aws::CreateRole {
            name: name.clone(),
            path: naming::role_path("prod"),
            assume_role_policy: pod_identity_operator::policy::pod_identity_trust_policy(None),
            tags: naming::ownership_tags(&namesake, NS, "app"),
            ..Default::default()
        })
        .await
        .expect("role");
    })
    .await;
    let env = operator_of(server, "prod", aws.clone(), aws.clone(), |_| {}).await;
    env.apply("app", json!({})).await;
    let b = env
        .wait_ready("app", "RoleConflict", |_, c| c.reason == "RoleConflict")
        .await;
    let message = ready(&b).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains(&prod.arn), "{message}");
    env.delete("app").await;
    env.wait_gone("app").await;
    let inv = aws.inventory();
    let r = inv
        .role(&name)
        .expect("the namesake's role is never deleted");
    assert_eq!(r.role.tags, naming::ownership_tags(&namesake, NS, "app"));
    assert!(r.attached_policy_arns.is_empty());
    env.stop().await;
}

/// What a Retain binding leaves once deleted: the role, the association and the
/// ServiceAccount the operator made, no longer referring to the binding. `admin` writes
/// the binding.
async fn retained(env: &Env, admin: &Client, aws: &AwsSim, cluster_arn: &str) -> ServiceAccount {
    create_in(admin, &env.ns, "kept", json!({"deletionPolicy": "Retain"})).await;
    let b = env.wait_converged("kept").await;
    let uid = b.uid().expect("uid");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &env.ns);
    let sa = sas.get("kept").await.expect("ServiceAccount created");
    assert!(sa.owner_references().iter().any(|o| o.uid == uid));

    Api::<PodIdentityBinding>::namespaced(admin.clone(), &env.ns)
        .delete("kept", &Default::default())
        .await
        .expect("delete binding");
    env.wait_gone("kept").await;
    let sa = sas.get("kept").await.expect("the ServiceAccount stays");
    assert!(
        sa.owner_references().iter().all(|o| o.uid != uid),
        "{:?}",
        sa.owner_references()
    );
    let inv = aws.inventory();
    assert!(
        inv.role(&naming::default_role_name(cluster_arn, &env.ns, "kept"))
            .is_some()
    );
    let assocs = inv.associations_for(&env.ns, "kept");
    assert_eq!(assocs.len(), 1);
    sa
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_releases_the_service_account_it_created() {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let prod = aws.add_cluster("prod");
    let env = operator_of(ApiServer::Kubesim, "prod", aws.clone(), aws.clone(), |_| {}).await;
    retained(&env, &env.client, &aws, &prod.arn).await;
    env.stop().await;
}

/// On a real API server with the garbage collector: a Delete binding's ServiceAccount
/// is collected (the collector runs), a Retain binding's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_service_account_from_the_garbage_collector() {
    let plane = support::cluster::ControlPlane::start(Default::default())
        .await
        .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
    // The operator as installed: its own identity, with the shipped RBAC.
    let operator =
        support::cluster::client_from(&support::cluster::install_operator_identity(&plane))
            .await
            .expect("operator client");
    let admin = plane.admin_client().await.expect("admin client");
    let ns = "tenancy";
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let prod = aws.add_cluster("prod");
    let env = Env::start_on(operator, None, ns, "prod", aws.clone(), aws.clone(), |_| {}).await;

    create_in(&admin, ns, "gone", json!({})).await;
    env.wait_converged("gone").await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    Api::<PodIdentityBinding>::namespaced(admin.clone(), ns)
        .delete("gone", &Default::default())
        .await
        .expect("delete binding");
    env.wait_gone("gone").await;
    let deadline = Instant::now() + WAIT;
    while sas.get_opt("gone").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "the garbage collector never removed the ServiceAccount of a deleted binding"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    retained(&env, &admin, &aws, &prod.arn).await;
    // The collector had time to act on anything still owned by the deleted binding.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sas.get_opt("kept").await.expect("get").is_some());
    env.stop().await;
}

/// Guardrails placing every role of `default` under the name prefix `t-`.
fn prefixed_guardrails() -> GuardrailConfig {
    GuardrailConfig::parse(
        r#"
rules:
- name: tenants
  namespaces: [default]
  allowedManagedPolicyArns: ["*"]
  roleNamePrefix: t-
"#,
    )
    .expect("guardrails")
}

/// CreateRole makes the prefixed role but its answer is lost, so the status never
/// records it; the binding is deleted while it waits to retry: the role goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefixed_role_the_status_never_recorded_is_removed_with_its_binding() {
    prefixed_role_never_recorded(ApiServer::Kubesim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefixed_role_the_status_never_recorded_is_removed_with_its_binding_on_a_real_apiserver()
{
    prefixed_role_never_recorded(ApiServer::Real).await;
}

async fn prefixed_role_never_recorded(server: ApiServer) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let prod = aws.add_cluster("prod");
    aws.knobs()
        .fail_next("CreateRole", Fault::timeout().after_effect());
    let env = operator_of(server, "prod", aws.clone(), aws.clone(), |s| {
        s.guardrails = Arc::new(GuardrailSource::fixed(prefixed_guardrails()));
        // Long enough that the binding is deleted before the create is retried.
        s.retry_base = Duration::from_secs(600);
        s.retry_max = Duration::from_secs(600);
    })
    .await;
    env.apply(
        "app",
        json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}),
    )
    .await;
    let b = env
        .wait_ready("app", "the CreateRole failure", |_, c| c.status == "False")
        .await;
    assert_eq!(b.status.as_ref().and_then(|s| s.role_arn.clone()), None);
    let name = naming::prefixed_role_name("t-", &prod.arn, NS, "app");
    let inv = aws.inventory();
    let made = inv.role(&name).expect("CreateRole made the prefixed role");
    assert!(naming::owned_by(&made.role.tags, &prod.arn, NS, "app"));
    assert_eq!(inv.roles.len(), 1);

    env.delete("app").await;
    env.wait_gone("app").await;
    let inv = aws.inventory();
    assert!(inv.roles.is_empty(), "orphaned: {:#?}", inv.roles);
    assert!(inv.associations.is_empty());
    env.stop().await;
}

crate::both!(
    inline_grants_that_walk_around_the_escalation_check_are_refused,
    inline_grants_that_walk_around_the_escalation_check_are_refused_on_a_real_apiserver,
    escalation_walkarounds_refused
);

/// A tenant allowed inline policies, but not roles to assume, cannot assume a named role
/// of the account (a deploy or break-glass role trusting it) nor reach IAM writes through
/// action patterns that do not start with `iam:`; each binding is `PolicyDenied` naming
/// its statement and gets no role, while a harmless inline policy is made.
async fn escalation_walkarounds_refused(server: ApiServer) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster("prod");
    let rules = GuardrailConfig::parse(
        r#"rules:
- name: tenants
  namespaces: ["*"]
  inlinePolicies: {allowed: true}
  allowedTargetRoleArns: ["arn:aws:iam::444455556666:role/analytics-*"]
"#,
    )
    .expect("guardrails");
    let env = operator_of(server, "prod", aws.clone(), aws.clone(), |s| {
        s.guardrails = Arc::new(GuardrailSource::fixed(rules));
    })
    .await;
    let inline = |action: &str, resource: &str| {
        json!({"role": {"inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": action, "Resource": resource}]}}}})
    };
    let refused = [
        (
            "assume",
            inline(
                "sts:AssumeRole",
                &format!("arn:aws:iam::{ACCOUNT}:role/break-glass"),
            ),
        ),
        ("pattern", inline("i*:*", "*")),
        ("anyservice", inline("*:AttachRolePolicy", "*")),
    ];
    for (name, spec) in &refused {
        env.apply(name, spec.clone()).await;
    }
    env.apply("harmless", inline("s3:GetObject", "arn:aws:s3:::bucket/*"))
        .await;
    for (name, _) in &refused {
        let b = env
            .wait_ready(name, "PolicyDenied", |_, c| c.reason == "PolicyDenied")
            .await;
        let message = ready(&b).map(|c| c.message.clone()).unwrap_or_default();
        assert!(
            message.contains("spec.role.inlinePolicies.p"),
            "{name}: {message}"
        );
    }
    env.wait_converged("harmless").await;
    let inv = aws.inventory();
    assert_eq!(inv.roles.len(), 1, "{:#?}", inv.roles);
    assert_eq!(
        inv.roles[0]
            .role
            .tags
            .get(naming::TAG_NAME)
            .map(String::as_str),
        Some("harmless")
    );
    env.stop().await;
}
