//! How the operator reads what AWS answers, and what it refuses before asking: the
//! managed role's trust without session tags, AWS errors that say something about the
//! spec (a managed policy that does not exist, a cross-account role, a trust policy not
//! yet propagated, quotas and sizes known in advance), the association's `externalId`
//! in the status, and per-binding bookkeeping (backoff entries, the pass deadline).
//! Each case through the controller runs on kubesim and on a real kube-apiserver.

use std::sync::Arc;
use std::time::Duration;

use pod_identity_operator::aws::faults::{Fault, Service};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::Settings;
use pod_identity_operator::crd::PodIdentityBinding;
use serde_json::json;

mod support;

use support::apiserver::{self, ApiServer, Running};
use support::{NS, kstatus_of, ready};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

fn ready_message(b: &PodIdentityBinding) -> String {
    ready(b).map(|c| c.message.clone()).unwrap_or_default()
}

const CLUSTER: &str = "prod";

async fn start(
    server: ApiServer,
    config: SimConfig,
    tune: impl FnOnce(&mut Settings),
) -> (Running, Arc<AwsSim>) {
    let aws = Arc::new(AwsSim::new(config));
    aws.add_cluster(CLUSTER);
    let env = apiserver::start(server, CLUSTER, aws.clone(), aws.clone(), tune).await;
    (env, aws)
}

/// The trust policy of the role the association of ServiceAccount `sa` names.
fn associated_trust(aws: &AwsSim, sa: &str) -> serde_json::Value {
    let inv = aws.inventory();
    let assoc = inv.associations_for(NS, sa);
    let arn = &assoc.first().expect("an association").role_arn;
    inv.roles
        .iter()
        .find(|r| &r.role.arn == arn)
        .map(|r| r.role.assume_role_policy.clone())
        .expect("the associated role exists")
}

crate::both!(
    without_session_tags_the_trust_still_names_the_source_account_and_cluster,
    without_session_tags_the_trust_still_names_the_source_account_and_cluster_on_a_real_apiserver,
    without_session_tags_the_trust_still_names_the_source_account_and_cluster_on
);

async fn without_session_tags_the_trust_still_names_the_source_account_and_cluster_on(
    server: ApiServer,
) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    env.apply("untagged", json!({"disableSessionTags": true}))
        .await;
    let b = env.wait_converged("untagged").await;
    let cluster_arn = aws.inventory().clusters[0].arn.clone();
    let trust = associated_trust(&aws, "untagged");
    let cond = &trust["Statement"][0]["Condition"];
    assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "111122223333");
    assert_eq!(cond["ArnEquals"]["aws:SourceArn"], cluster_arn.as_str());
    assert!(!trust.to_string().contains("aws:RequestTag/"), "{trust}");
    let role = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "RoleReady"))
        .expect("RoleReady");
    assert!(
        role.message.contains("scoped to cluster prod"),
        "{}",
        role.message
    );
    env.stop().await;
}

crate::both!(
    a_managed_policy_that_does_not_exist_stalls_naming_its_entry,
    a_managed_policy_that_does_not_exist_stalls_naming_its_entry_on_a_real_apiserver,
    a_managed_policy_that_does_not_exist_stalls_naming_its_entry_on
);

async fn a_managed_policy_that_does_not_exist_stalls_naming_its_entry_on(server: ApiServer) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    let typo = "arn:aws:iam::aws:policy/ReadOnlyAcess";
    env.apply(
        "typo",
        json!({"role": {"managedPolicyArns": [READ_ONLY, typo]}}),
    )
    .await;
    let b = env
        .wait_ready("typo", "InvalidSpec", |_, c| c.reason == "InvalidSpec")
        .await;
    let message = ready_message(&b);
    assert!(
        message.contains("spec.role.managedPolicyArns[1]") && message.contains(typo),
        "{message}"
    );
    assert_eq!(
        kstatus_of(&b),
        [("Stalled".to_owned(), "InvalidSpec".to_owned())]
    );
    // Once its status says so (that write wakes it once more), not retried until the
    // spec changes; fixed, it converges.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attaches = aws.knobs().calls_of("AttachRolePolicy");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(aws.knobs().calls_of("AttachRolePolicy"), attaches);
    env.patch_role("typo", json!({"managedPolicyArns": [READ_ONLY]}))
        .await;
    env.wait_converged("typo").await;
    env.stop().await;
}

crate::both!(
    cross_account_pass_role_answered_as_access_denied_is_the_specs_problem,
    cross_account_pass_role_answered_as_access_denied_is_the_specs_problem_on_a_real_apiserver,
    cross_account_pass_role_answered_as_access_denied_is_the_specs_problem_on
);

async fn cross_account_pass_role_answered_as_access_denied_is_the_specs_problem_on(
    server: ApiServer,
) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    aws.knobs().fail_random(
        7,
        1.0,
        Fault::new(
            "AccessDeniedException",
            "Cross-account pass role is not allowed.",
        ),
        &["CreatePodIdentityAssociation"],
    );
    env.apply("chained", json!({})).await;
    let b = env
        .wait_ready("chained", "InvalidSpec", |_, c| c.reason == "InvalidSpec")
        .await;
    let message = ready_message(&b);
    assert!(message.contains("targetRoleArn"), "{message}");
    assert!(!message.contains("iam-policy"), "{message}");
    assert!(
        !env.event_reasons()
            .await
            .iter()
            .any(|(_, r)| r == "AccessDenied")
    );
    env.stop().await;
}

crate::both!(an_invalid_trust_policy_is_propagation_only_right_after_the_operator_wrote_it, an_invalid_trust_policy_is_propagation_only_right_after_the_operator_wrote_it_on_a_real_apiserver, an_invalid_trust_policy_is_propagation_only_right_after_the_operator_wrote_it_on);

async fn an_invalid_trust_policy_is_propagation_only_right_after_the_operator_wrote_it_on(
    server: ApiServer,
) {
    let window = Duration::from_secs(2);
    let (env, aws) = start(server, SimConfig::default(), |s| {
        s.propagation_window = window
    })
    .await;
    let trust_invalid = || {
        Fault::new(
            "InvalidParameterException",
            "Trust policy of the role provided is invalid",
        )
    };
    // A role created by this pass: propagation, retried, then Ready.
    for n in 1..=3 {
        aws.knobs()
            .fail_nth("CreatePodIdentityAssociation", n, trust_invalid());
    }
    env.apply("fresh", json!({})).await;
    env.wait_ready("fresh", "RolePropagating", |_, c| {
        c.reason == "RolePropagating"
    })
    .await;
    env.wait_converged("fresh").await;

    // Long after creation, a spec change rewrites the trust policy (session tags off)
    // and updates the association: EKS not seeing the new trust yet is propagation.
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let next = aws.knobs().calls_of("UpdatePodIdentityAssociation") + 1;
    for n in next..next + 3 {
        aws.knobs()
            .fail_nth("UpdatePodIdentityAssociation", n, trust_invalid());
    }
    env.patch_spec("fresh", json!({"disableSessionTags": true}))
        .await;
    env.wait_ready("fresh", "RolePropagating after the trust write", |_, c| {
        c.reason == "RolePropagating"
    })
    .await;
    let b = env.wait_converged("fresh").await;
    assert_eq!(b.metadata.generation, Some(2));

    // A role nobody wrote lately: the trust policy is the spec's problem.
    support::existing_role(&aws).await;
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let next = aws.knobs().calls_of("CreatePodIdentityAssociation") + 1;
    aws.knobs()
        .fail_nth("CreatePodIdentityAssociation", next, trust_invalid());
    env.apply(
        "existing",
        json!({"role": {"arn": support::EXISTING_ROLE_ARN}}),
    )
    .await;
    // Reported as the spec's problem (a Warning); the operator's own status write
    // wakes the binding again, and EKS accepts the association then.
    let note = env.wait_warning("existing", "InvalidSpec").await;
    assert!(note.contains("pods.eks.amazonaws.com"), "{note}");
    env.stop().await;
}

crate::both!(
    more_managed_policies_than_the_quota_are_refused_before_any_aws_write,
    more_managed_policies_than_the_quota_are_refused_before_any_aws_write_on_a_real_apiserver,
    more_managed_policies_than_the_quota_are_refused_before_any_aws_write_on
);

async fn more_managed_policies_than_the_quota_are_refused_before_any_aws_write_on(
    server: ApiServer,
) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    let arns: Vec<String> = (0..11)
        .map(|i| format!("arn:aws:iam::111122223333:policy/p{i}"))
        .collect();
    env.apply("many", json!({"role": {"managedPolicyArns": arns}}))
        .await;
    let b = env
        .wait_ready("many", "InvalidSpec", |_, c| c.reason == "InvalidSpec")
        .await;
    let message = ready_message(&b);
    assert!(
        message.starts_with("invalid spec.role.managedPolicyArns: 11 managed policies"),
        "{message}"
    );
    assert_eq!(support::write_calls(aws.knobs()), 0);
    env.stop().await;
}

crate::both!(
    a_session_policy_over_2048_characters_is_refused_before_any_aws_write,
    a_session_policy_over_2048_characters_is_refused_before_any_aws_write_on_a_real_apiserver,
    a_session_policy_over_2048_characters_is_refused_before_any_aws_write_on
);

async fn a_session_policy_over_2048_characters_is_refused_before_any_aws_write_on(
    server: ApiServer,
) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    let resources: Vec<String> = (0..120)
        .map(|i| format!("arn:aws:s3:::bucket-{i:04}/*"))
        .collect();
    env.apply(
        "wordy",
        json!({
            "disableSessionTags": true,
            "sessionPolicy": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}]},
        }),
    )
    .await;
    let b = env
        .wait_ready("wordy", "InvalidSpec", |_, c| c.reason == "InvalidSpec")
        .await;
    let message = ready_message(&b);
    assert!(
        message.starts_with("invalid spec.sessionPolicy:") && message.contains("2048"),
        "{message}"
    );
    assert_eq!(aws.knobs().calls_of("CreatePodIdentityAssociation"), 0);
    assert_eq!(support::write_calls(aws.knobs()), 0);
    env.stop().await;
}

crate::both!(
    the_external_id_of_a_chained_association_is_in_the_status,
    the_external_id_of_a_chained_association_is_in_the_status_on_a_real_apiserver,
    the_external_id_of_a_chained_association_is_in_the_status_on
);

async fn the_external_id_of_a_chained_association_is_in_the_status_on(server: ApiServer) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    let target = "arn:aws:iam::444455556666:role/data-reader";
    env.apply("chained", json!({"targetRoleArn": target})).await;
    let b = env.wait_converged("chained").await;
    let inv = aws.inventory();
    let assoc = inv.associations_for(NS, "chained");
    let from_eks = assoc[0].external_id.clone();
    assert!(from_eks.is_some());
    let st = b.status.expect("status");
    assert_eq!(st.external_id, from_eks);

    // Without a target role there is none; removing the target removes it from the
    // status.
    env.apply("plain", json!({})).await;
    let b = env.wait_converged("plain").await;
    assert_eq!(b.status.and_then(|s| s.external_id), None);
    env.patch_spec("chained", json!({"targetRoleArn": null}))
        .await;
    let b = env.wait_converged("chained").await;
    assert_eq!(b.metadata.generation, Some(2));
    assert_eq!(b.status.and_then(|s| s.external_id), None);
    env.stop().await;
}

crate::both!(
    an_existing_role_chaining_into_a_target_is_told_what_it_must_allow,
    an_existing_role_chaining_into_a_target_is_told_what_it_must_allow_on_a_real_apiserver,
    an_existing_role_chaining_into_a_target_is_told_what_it_must_allow_on
);

async fn an_existing_role_chaining_into_a_target_is_told_what_it_must_allow_on(server: ApiServer) {
    let (env, aws) = start(server, SimConfig::default(), |_| {}).await;
    support::existing_role(&aws).await;
    let target = "arn:aws:iam::444455556666:role/data-reader";
    env.apply(
        "byo",
        json!({"role": {"arn": support::EXISTING_ROLE_ARN}, "targetRoleArn": target}),
    )
    .await;
    let b = env.wait_converged("byo").await;
    let st = b.status.expect("status");
    let role = st
        .conditions
        .iter()
        .find(|c| c.type_ == "RoleReady")
        .expect("RoleReady");
    assert_eq!(role.reason, "RoleExisting");
    for wanted in ["sts:AssumeRole", "sts:TagSession", target] {
        assert!(role.message.contains(wanted), "{}", role.message);
    }
    assert!(st.external_id.is_some());
    // The existing role was only read.
    let inv = aws.inventory();
    let deploy = inv.role("deploy").expect("deploy");
    assert_eq!(
        deploy.inline_policies.keys().collect::<Vec<_>>(),
        ["deploy"]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_binding_leaves_no_retry_state_behind() {
    use kube::api::{Api, DeleteParams, PostParams};
    use pod_identity_operator::controller::{self, Context};
    use pod_identity_operator::guardrails::GuardrailSource;
    use pod_identity_operator::kubesim::KubeSim;

    // The controller run here rather than through `Env`, to look at its context.
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let kube = KubeSim::new();
    let client = kube.client();
    support::install_crd(&client).await;
    let mut settings = Settings::new(CLUSTER);
    settings.retry_base = Duration::from_millis(20);
    settings.retry_max = Duration::from_millis(200);
    settings.retry_soon = Duration::from_millis(50);
    settings.retry_slow = Duration::from_millis(200);
    settings.guardrails = Arc::new(GuardrailSource::fixed(support::permissive_guardrails()));
    let ctx = Context::new(client.clone(), aws.clone(), aws.clone(), settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(ctx.clone(), async {
        let _ = stopped.await;
    }));
    let api: Api<PodIdentityBinding> = Api::namespaced(client.clone(), NS);
    // Failing first (a server error on CreateRole), then Ready.
    aws.knobs()
        .fail_nth("CreateRole", 1, Fault::server_error(Service::Iam));
    let b: PodIdentityBinding = serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": "brief", "namespace": NS}, "spec": {},
    }))
    .expect("binding");
    api.create(&PostParams::default(), &b)
        .await
        .expect("created");
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let got = api.get("brief").await.expect("get");
        if ready(&got).is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never Ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ctx.tracked_bindings() >= 1,
        "the role's creation is remembered"
    );

    // Its cleanup fails twice before it succeeds.
    let next = aws.knobs().calls_of("DeletePodIdentityAssociation") + 1;
    for n in next..next + 2 {
        aws.knobs().fail_nth(
            "DeletePodIdentityAssociation",
            n,
            Fault::server_error(Service::Eks),
        );
    }
    api.delete("brief", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = std::time::Instant::now() + support::WAIT;
    while api.get_opt("brief").await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(aws.knobs().calls_of("DeletePodIdentityAssociation") >= next + 2);
    // The pass that let it go forgot it.
    let deadline = std::time::Instant::now() + support::WAIT;
    while ctx.tracked_bindings() != 0 {
        assert!(std::time::Instant::now() < deadline, "still tracked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(support::WAIT, task).await;
}

crate::both!(
    a_pass_past_its_deadline_fails_as_retrying_and_the_next_one_converges,
    a_pass_past_its_deadline_fails_as_retrying_and_the_next_one_converges_on_a_real_apiserver,
    a_pass_past_its_deadline_fails_as_retrying_and_the_next_one_converges_on
);

async fn a_pass_past_its_deadline_fails_as_retrying_and_the_next_one_converges_on(
    server: ApiServer,
) {
    let (env, aws) = start(server, SimConfig::default(), |s| {
        s.pass_deadline = Duration::from_millis(400);
    })
    .await;
    // CreateRole hangs far longer than a pass may take.
    aws.knobs()
        .set_operation_latency("CreateRole", Duration::from_secs(30));
    env.apply("slow", json!({})).await;
    let b = env
        .wait_ready("slow", "Retrying at the deadline", |_, c| {
            c.reason == "Retrying" && c.message.contains("did not finish within")
        })
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Reconciling".to_owned(), "Retrying".to_owned())]
    );
    aws.knobs()
        .set_operation_latency("CreateRole", Duration::ZERO);
    env.wait_converged("slow").await;
    let inv = aws.inventory();
    assert_eq!(inv.associations_for(NS, "slow").len(), 1);
    env.stop().await;
}
