//! The controller in-process against kubesim and the AWS simulator: lifecycle through the
//! finalizer, conditions, Events, zero-write resyncs, crash-safety of the create path,
//! propagation and release windows, conflicts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, CustomResourceExt, ResourceExt};
use pod_identity_operator::aws::faults::Fault;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::{self, Context, Settings};
use pod_identity_operator::crd::{Condition, PodIdentityBinding};
use pod_identity_operator::kubesim::KubeSim;
use pod_identity_operator::naming;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const CLUSTER: &str = "prod";
const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

struct Env {
    kube: KubeSim,
    client: Client,
    aws: Arc<AwsSim>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Env {
    async fn start(config: SimConfig, tune: impl FnOnce(&mut Settings)) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let kube = KubeSim::new();
        let client = kube.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &PodIdentityBinding::crd())
            .await
            .expect("CRD installs");
        let aws = Arc::new(AwsSim::new(config));
        aws.add_cluster(CLUSTER);
        let mut settings = Settings::new(CLUSTER);
        settings.resync = Duration::from_secs(3600);
        settings.retry_base = Duration::from_millis(20);
        settings.retry_max = Duration::from_millis(500);
        settings.retry_soon = Duration::from_millis(100);
        settings.retry_slow = Duration::from_millis(500);
        tune(&mut settings);
        let ctx = Context::new(client.clone(), aws.clone(), aws.clone(), settings);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx, async {
            let _ = rx.await;
        }));
        Env {
            kube,
            client,
            aws,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }

    fn bindings(&self) -> Api<PodIdentityBinding> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn apply(&self, name: &str, spec: Value) -> PodIdentityBinding {
        let b: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": NS}, "spec": spec,
        }))
        .expect("binding");
        self.bindings()
            .create(&PostParams::default(), &b)
            .await
            .expect("binding created")
    }

    /// Waits until `pred` holds for the binding's Ready condition and returns it.
    async fn wait_ready(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&PodIdentityBinding, &Condition) -> bool,
    ) -> PodIdentityBinding {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(b) = self.bindings().get_opt(name).await.expect("get binding")
                && let Some(c) = ready(&b)
                && pred(&b, c)
            {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "binding {name} never got {what}: {:?}",
                self.bindings()
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn wait_converged(&self, name: &str) -> PodIdentityBinding {
        self.wait_ready(name, "Ready=True for its generation", |b, c| {
            c.status == "True"
                && c.observed_generation == b.metadata.generation
                && b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation
        })
        .await
    }

    async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + WAIT;
        while self.bindings().get_opt(name).await.expect("get").is_some() {
            assert!(Instant::now() < deadline, "binding {name} never went away");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn delete(&self, name: &str) {
        self.bindings()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete binding");
    }

    async fn event_reasons(&self) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), NS);
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect()
    }
}

fn ready(b: &PodIdentityBinding) -> Option<&Condition> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

fn owned_roles(aws: &AwsSim, name: &str) -> usize {
    aws.inventory()
        .roles
        .iter()
        .filter(|r| naming::owned_by(&r.role.tags, CLUSTER, NS, name))
        .count()
}

fn write_calls(aws: &AwsSim) -> u64 {
    aws.knobs()
        .calls()
        .into_iter()
        .filter(|(op, _)| {
            !(op.starts_with("Get") || op.starts_with("List") || op.starts_with("Describe"))
        })
        .map(|(_, n)| n)
        .sum()
}

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_through_the_finalizer() {
    let env = Env::start(SimConfig::default(), |_| {}).await;
    env.apply(
        "web",
        json!({"serviceAccount": {"labels": {"team": "a"}}, "tags": {"env": "test"}}),
    )
    .await;
    let b = env.wait_converged("web").await;
    assert!(
        b.finalizers()
            .iter()
            .any(|f| f == "podidentity.dev/cleanup")
    );
    let st = b.status.clone().expect("status");
    let role_name = naming::default_role_name(CLUSTER, NS, "web");
    assert_eq!(
        st.role_arn.as_deref(),
        Some(format!("arn:aws:iam::111122223333:role/pod-identity/{CLUSTER}/{role_name}").as_str())
    );
    assert!(
        st.association_id
            .as_deref()
            .is_some_and(|id| id.starts_with("a-"))
    );
    assert_eq!(
        st.service_account
            .as_ref()
            .map(|s| (s.name.as_str(), s.created)),
        Some(("web", true))
    );
    let types: Vec<(&str, &str, Option<i64>)> = st
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.observed_generation))
        .collect();
    assert_eq!(
        types,
        [
            ("Ready", "True", Some(1)),
            ("RoleReady", "True", Some(1)),
            ("ServiceAccountReady", "True", Some(1)),
            ("AssociationReady", "True", Some(1)),
        ]
    );

    // AWS holds one role, scoped to the ServiceAccount, and one association, both ours.
    let inv = env.aws.inventory();
    let role = inv.role(&role_name).expect("role exists");
    assert_eq!(role.role.tags.get("env").map(String::as_str), Some("test"));
    let trust = role.role.assume_role_policy.to_string();
    assert!(trust.contains("kubernetes-service-account") && trust.contains("\"web\""));
    let assocs = inv.associations_for(NS, "web");
    assert_eq!(assocs.len(), 1);
    assert!(naming::owned_by(&assocs[0].tags, CLUSTER, NS, "web"));

    // The ServiceAccount was created with the labels and an ownerReference.
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NS);
    let sa = sas.get("web").await.expect("ServiceAccount created");
    assert_eq!(sa.labels().get("team").map(String::as_str), Some("a"));
    assert_eq!(sa.owner_references()[0].uid, b.uid().expect("uid"));

    let reasons = env.event_reasons().await;
    for wanted in ["ServiceAccountCreated", "RoleCreated", "AssociationCreated"] {
        assert!(
            reasons.iter().any(|(t, r)| t == "Normal" && r == wanted),
            "no {wanted} event in {reasons:?}"
        );
    }

    // An update: generation 2, a policy attached, observed in the conditions.
    env.bindings()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {"managedPolicyArns": [READ_ONLY]}}})),
        )
        .await
        .expect("patch spec");
    let b = env.wait_converged("web").await;
    assert_eq!(b.metadata.generation, Some(2));
    assert!(
        b.status
            .as_ref()
            .expect("status")
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
    let inv = env.aws.inventory();
    assert_eq!(
        inv.role(&role_name).expect("role").attached_policy_arns,
        [READ_ONLY]
    );

    // A deleted ServiceAccount is recreated.
    sas.delete("web", &DeleteParams::default())
        .await
        .expect("delete sa");
    let deadline = Instant::now() + WAIT;
    while sas.get_opt("web").await.expect("get").is_none() {
        assert!(Instant::now() < deadline, "ServiceAccount never recreated");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Delete: the finalizer runs cleanup; AWS holds nothing of the binding afterwards
    // and the ServiceAccount goes with its owner.
    env.delete("web").await;
    env.wait_gone("web").await;
    let inv = env.aws.inventory();
    assert!(inv.role(&role_name).is_none());
    assert!(inv.associations_for(NS, "web").is_empty());
    assert!(sas.get_opt("web").await.expect("get").is_none());
    let reasons = env.event_reasons().await;
    for wanted in ["AssociationDeleted", "RoleDeleted"] {
        assert!(
            reasons.iter().any(|(_, r)| r == wanted),
            "no {wanted} event"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_resync_writes_nothing() {
    let env = Env::start(SimConfig::default(), |s| {
        s.resync = Duration::from_millis(100)
    })
    .await;
    env.apply("quiet", json!({"role": {"managedPolicyArns": [READ_ONLY],
        "inlinePolicies": {"s3": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}}))
        .await;
    env.wait_converged("quiet").await;
    // Let the pass that reported Ready settle, then count from zero.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.kube.reset_write_counts();
    let aws_writes = write_calls(&env.aws);
    let reads_before = env.aws.knobs().calls_of("GetRole");
    // Several resyncs happen (each reads the role again)...
    let deadline = Instant::now() + WAIT;
    while env.aws.knobs().calls_of("GetRole") < reads_before + 5 {
        assert!(Instant::now() < deadline, "no resyncs happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and none of them writes to Kubernetes or AWS.
    let kube_writes: Vec<_> = env
        .kube
        .write_counts()
        .iter()
        .map(|(r, v, n)| format!("{r} {v:?} {n}"))
        .collect();
    assert!(
        kube_writes.is_empty(),
        "Kubernetes writes during converged resyncs: {kube_writes:?}"
    );
    assert_eq!(
        write_calls(&env.aws),
        aws_writes,
        "AWS writes during converged resyncs: {:?}",
        env.aws.knobs().calls()
    );
    env.stop().await;
}

/// For every write of the create path, failing it once (before it acts, or after it
/// acted with the answer lost) still ends with one role, one association and Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_create_write_converges_to_exactly_one_of_each() {
    let create_path = [
        "CreateRole",
        "AttachRolePolicy",
        "PutRolePolicy",
        "CreatePodIdentityAssociation",
    ];
    let spec = json!({"role": {"managedPolicyArns": [READ_ONLY],
        "inlinePolicies": {"s3": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}});
    for (k, op) in create_path.iter().enumerate() {
        for after_effect in [false, true] {
            let env = Env::start(SimConfig::default(), |_| {}).await;
            let fault = if after_effect {
                Fault::timeout().after_effect()
            } else {
                Fault::timeout()
            };
            env.aws.knobs().fail_nth(op, 1, fault);
            env.apply("crashy", spec.clone()).await;
            env.wait_converged("crashy").await;
            let case = format!(
                "write {} ({op}) failed, after effect: {after_effect}",
                k + 1
            );
            // A write failed before acting is repeated; one that acted with its answer
            // lost is not (the next pass observes what it made).
            let expected_calls = if after_effect { 1 } else { 2 };
            assert_eq!(env.aws.knobs().calls_of(op), expected_calls, "{case}");
            let reasons = env.event_reasons().await;
            assert!(
                reasons.iter().any(|(t, r)| t == "Warning" && r == "Retrying"),
                "{case}: the failure was not reported: {reasons:?}"
            );
            assert_eq!(owned_roles(&env.aws, "crashy"), 1, "{case}");
            let inv = env.aws.inventory();
            assert_eq!(inv.associations_for(NS, "crashy").len(), 1, "{case}");
            let role = inv
                .role(&naming::default_role_name(CLUSTER, NS, "crashy"))
                .expect("role");
            assert_eq!(role.attached_policy_arns, [READ_ONLY], "{case}");
            assert_eq!(role.inline_policies.len(), 1, "{case}");
            env.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_not_yet_visible_to_eks_reports_role_propagating_then_ready() {
    let config = SimConfig {
        role_propagation: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let env = Env::start(config, |_| {}).await;
    env.apply("fresh", json!({})).await;
    env.wait_ready("fresh", "RolePropagating", |_, c| {
        c.status == "False" && c.reason == "RolePropagating"
    })
    .await;
    let b = env.wait_converged("fresh").await;
    assert_eq!(ready(&b).map(|c| c.reason.as_str()), Some("Reconciled"));
    assert_eq!(env.aws.inventory().associations_for(NS, "fresh").len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_recreate_during_the_association_release_window_converges() {
    let config = SimConfig {
        association_release: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let env = Env::start(config, |_| {}).await;
    env.apply("replaced", json!({})).await;
    env.wait_converged("replaced").await;
    env.delete("replaced").await;
    env.wait_gone("replaced").await;
    let b = env.apply("replaced", json!({})).await;
    let b2 = env.wait_converged("replaced").await;
    assert_eq!(b.uid(), b2.uid());
    let inv = env.aws.inventory();
    assert_eq!(inv.associations_for(NS, "replaced").len(), 1);
    assert_eq!(owned_roles(&env.aws, "replaced"), 1);
    assert!(
        env.aws.knobs().calls_of("CreatePodIdentityAssociation") >= 3,
        "the release window was not hit"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_binding_of_a_service_account_wins() {
    let env = Env::start(SimConfig::default(), |_| {}).await;
    env.apply("first", json!({"serviceAccount": {"name": "shared"}}))
        .await;
    env.wait_converged("first").await;
    env.apply("second", json!({"serviceAccount": {"name": "shared"}}))
        .await;
    let b = env
        .wait_ready("second", "AssociationConflict", |_, c| {
            c.reason == "AssociationConflict"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.status == "False" && c.message.contains("first")));
    assert_eq!(
        owned_roles(&env.aws, "second"),
        0,
        "a blocked binding writes nothing"
    );
    let reasons = env.event_reasons().await;
    assert!(
        reasons
            .iter()
            .any(|(t, r)| t == "Warning" && r == "AssociationConflict")
    );
    // When the older one goes, the newer one takes over.
    env.delete("first").await;
    env.wait_gone("first").await;
    env.wait_converged("second").await;
    let inv = env.aws.inventory();
    let assocs = inv.associations_for(NS, "shared");
    assert_eq!(assocs.len(), 1);
    assert!(naming::owned_by(&assocs[0].tags, CLUSTER, NS, "second"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_role_is_a_conflict_and_an_invalid_spec_makes_no_aws_call() {
    let env = Env::start(SimConfig::default(), |_| {}).await;
    // A role of the derived name made by someone else.
    use pod_identity_operator::aws::{CreateRole, IamApi};
    env.aws
        .create_role(&CreateRole {
            name: naming::default_role_name(CLUSTER, NS, "taken"),
            path: "/".into(),
            assume_role_policy: pod_identity_operator::policy::pod_identity_trust_policy(None),
            ..CreateRole::default()
        })
        .await
        .expect("foreign role");
    env.apply("taken", json!({})).await;
    let b = env
        .wait_ready("taken", "RoleConflict", |_, c| c.reason == "RoleConflict")
        .await;
    let role_cond = b
        .status
        .as_ref()
        .expect("status")
        .conditions
        .iter()
        .find(|c| c.type_ == "RoleReady")
        .cloned();
    assert_eq!(role_cond.map(|c| c.status), Some("False".into()));
    assert!(env.aws.inventory().associations_for(NS, "taken").is_empty());

    // An invalid spec the schema lets through (a malformed policy document).
    let writes = write_calls(&env.aws);
    env.apply(
        "bad",
        json!({"role": {"inlinePolicies": {"p": {"Statement": "nope"}}}}),
    )
    .await;
    let b = env
        .wait_ready("bad", "InvalidSpec", |_, c| c.reason == "InvalidSpec")
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("role.inlinePolicies.p")));
    assert_eq!(write_calls(&env.aws), writes);

    // Deleting a binding that made nothing leaves the foreign role alone.
    env.delete("taken").await;
    env.wait_gone("taken").await;
    assert!(
        env.aws
            .inventory()
            .role(&naming::default_role_name(CLUSTER, NS, "taken"))
            .is_some()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_and_cel_rules_reject_bad_bindings() {
    let env = Env::start(SimConfig::default(), |_| {}).await;
    let bad = [
        json!({"role": {"arn": "arn:aws:iam::111122223333:role/x", "name": "y"}}),
        json!({"role": {"maxSessionDuration": 60}}),
        json!({"role": {"arn": "not-an-arn"}}),
        json!({"sessionPolicy": {"Version": "2012-10-17"}}),
        json!({"tags": {"aws:reserved": "x"}}),
        json!({"deletionPolicy": "Sometimes"}),
        json!({"serviceAccount": {"name": "Not_DNS"}}),
    ];
    let raw: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &ApiResource::erase::<PodIdentityBinding>(&()),
    );
    for (i, spec) in bad.into_iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": format!("bad-{i}"), "namespace": NS}, "spec": spec.clone(),
        }))
        .expect("object");
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("{spec} must be refused"));
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 422),
            "{spec}: {err:?}"
        );
    }
    env.apply("good", json!({"sessionPolicy": {"Version": "2012-10-17", "Statement": []}, "disableSessionTags": true}))
        .await;
    env.stop().await;
}
