//! The crash-safety run: seeded SIGKILLs, watch drops or API server restarts, and AWS
//! faults during a churn of bindings, then exact checks of what AWS and Kubernetes hold.

use super::crash_checks::*;
use super::crash_harness::{CrashKube, CrashReport};
use super::*;

/// Crash safety: 20 bindings created, updated and deleted while the operator binary is
/// killed with SIGKILL at seeded random points and restarted, kubesim drops every watch
/// now and then, and a seeded fraction of AWS writes fail (some after AWS acted, their
/// answer lost). Once the churn ends and the faults are cleared, every live binding is
/// Ready for its generation, every deleted one is gone, and AWS holds exactly the
/// expected roles, policies and associations. Replay a failure with `CRASH_SEED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_survives_seeded_kills_watch_drops_and_aws_faults() {
    const TEST: &str = "the_operator_binary_survives_seeded_kills_watch_drops_and_aws_faults";
    let target = Target::from_env();
    if target.skip_without_kubesim(TEST, "watch-drop fault injection") {
        return;
    }
    target.note_simulator_kept(TEST, "fault injection (AWS writes failing after effect)");
    crash_safety_run(CrashKube::kubesim().await).await;
}

/// The crash-safety run on a real control plane of the test's own: its watches break
/// for real, by kube-apiserver being SIGKILLed and restarted during the churn, and the
/// operator runs as the identity `config/rbac/` binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_survives_seeded_kills_apiserver_restarts_and_aws_faults() {
    crash_safety_run(CrashKube::real_apiserver().await).await;
}

async fn crash_safety_run(mut side: CrashKube) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use pod_identity_operator::aws::faults::Fault;
    use pod_identity_operator::aws::sim::{AwsSim, DEFAULT_MANAGED_POLICIES, SimConfig};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const CLUSTER: &str = "crash";
    const BINDINGS: usize = 20;
    const DELETED: usize = 7;
    /// Deleted bindings created again under the same name once gone, as GitOps
    /// replaces a binding: their new association meets the old one's release window.
    const RECREATED: usize = 3;
    const KILLS: usize = 32;
    /// Kills that must land while the operator has an AWS call in flight.
    const KILLS_IN_FLIGHT: usize = 10;
    const FAULT_FRACTION: f64 = 0.15;
    const RESYNC: u32 = 2;
    // The operator's own AWS rates, above the defaults (10 calls/s each) so that its
    // resync, paced to half of them, comes every few seconds for this many bindings.
    const RATES: [&str; 4] = ["--iam-rate", "40", "--eks-rate", "40"];
    // EKS's eventual consistency, on for the whole run: a new role is invisible to EKS
    // for a while, and a deleted association blocks its ServiceAccount a while longer
    // (longer than the propagation retry, so a replaced binding meets it).
    const PROPAGATION: Duration = Duration::from_secs(2);
    const RELEASE: Duration = Duration::from_secs(8);
    // AWS's own latency during the churn, so kills land inside calls.
    const READ_LATENCY: Duration = Duration::from_millis(10);
    const WRITE_LATENCY: Duration = Duration::from_millis(60);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("CRASH_SEED is a number"))
        .unwrap_or(20_261_123);
    let started = Instant::now();
    let report = CrashReport::new(seed, side.report_file(), side.name());
    // The real server takes seconds to come back, so it is broken less often.
    let break_chance = match side {
        CrashKube::Kubesim { .. } => 0.2,
        CrashKube::Real { .. } => 0.1,
    };
    let mut rng = StdRng::seed_from_u64(seed);

    let aws = Arc::new(AwsSim::new(SimConfig {
        account_id: ACCOUNT_ID.into(),
        seed,
        role_propagation: PROPAGATION,
        association_release: RELEASE,
        ..SimConfig::default()
    }));
    let cluster_arn = aws.add_cluster(CLUSTER).arn;
    support::enforce_rendered(&aws, CLUSTER, &e2e_guardrails());
    let writes = [
        "CreateRole",
        "UpdateRole",
        "UpdateAssumeRolePolicy",
        "AttachRolePolicy",
        "DetachRolePolicy",
        "PutRolePolicy",
        "DeleteRolePolicy",
        "DeleteRole",
        "TagRole",
        "CreatePodIdentityAssociation",
        "UpdatePodIdentityAssociation",
        "DeletePodIdentityAssociation",
    ];
    aws.knobs().fail_random(
        seed,
        FAULT_FRACTION,
        Fault::timeout().after_effect(),
        &writes,
    );
    aws.knobs().set_latency(READ_LATENCY);
    for op in writes {
        aws.knobs().set_operation_latency(op, WRITE_LATENCY);
    }
    let (aws_url, front) = serve_simulator(aws.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = side.operator_kubeconfig();
    let client = side.client().await;
    let log = dir.path().join("operator.log");
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), NS);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);

    // The churn: every binding created, most updated, some deleted and some of those
    // created again, in a seeded order.
    enum Op {
        Create(usize),
        Update(usize),
        Delete(usize),
        Recreate(usize),
    }
    let mut ops: Vec<Op> = (0..BINDINGS).map(Op::Create).collect();
    for i in 0..BINDINGS {
        if rng.random_bool(0.75) {
            let created = ops
                .iter()
                .position(|o| matches!(o, Op::Create(j) if *j == i))
                .expect("every binding has a create");
            let at = rng.random_range(created + 1..=ops.len());
            ops.insert(at, Op::Update(i));
        }
    }
    let mut deleted = std::collections::BTreeSet::new();
    while deleted.len() < DELETED {
        deleted.insert(rng.random_range(0..BINDINGS));
    }
    for &i in &deleted {
        ops.push(Op::Delete(i));
    }
    let mut recreated = std::collections::BTreeSet::new();
    while recreated.len() < RECREATED {
        let pick: Vec<usize> = deleted.iter().copied().collect();
        recreated.insert(pick[rng.random_range(0..pick.len())]);
    }
    for &i in &recreated {
        let removed = ops
            .iter()
            .position(|o| matches!(o, Op::Delete(j) if *j == i))
            .expect("a recreated binding was deleted");
        let at = rng.random_range(removed + 1..=ops.len());
        ops.insert(at, Op::Recreate(i));
    }
    let gone: Vec<String> = deleted
        .difference(&recreated)
        .map(|i| format!("crash-{i:02}"))
        .collect();
    let mut kill_after: std::collections::BTreeSet<usize> = Default::default();
    while kill_after.len() < KILLS {
        kill_after.insert(rng.random_range(0..ops.len()));
    }
    let random_policies = |rng: &mut StdRng| -> Vec<String> {
        let mut chosen: Vec<String> = (0..rng.random_range(0..3))
            .map(|_| {
                DEFAULT_MANAGED_POLICIES[rng.random_range(0..DEFAULT_MANAGED_POLICIES.len())]
                    .to_owned()
            })
            .collect();
        chosen.sort();
        chosen.dedup();
        chosen
    };
    let new_binding = |name: &str, spec: &CrashSpec| -> PodIdentityBinding {
        serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"role": {"managedPolicyArns": spec.managed,
                "inlinePolicies": {"read": spec.inline}}},
        }))
        .expect("binding")
    };
    let read_bucket = |bucket: String| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject",
             "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
    };

    let mut expected: BTreeMap<String, CrashSpec> = BTreeMap::new();
    let mut recreated_at = BTreeMap::new();
    let mut operator = Some(spawn_operator_with(
        &kubeconfig,
        CLUSTER,
        &local(&aws_url),
        None,
        RESYNC,
        &log,
        &RATES,
    ));
    let (mut kills, mut watch_drops) = (0, 0);
    // Kills that cut an AWS call, as the simulator saw it at the SIGKILL.
    let (mut kills_in_call, mut kills_in_write) = (0, 0);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Create(i) => {
                let name = format!("crash-{i:02}");
                let spec = CrashSpec {
                    managed: random_policies(&mut rng),
                    description: None,
                    inline: read_bucket(format!("bucket-{i}")),
                };
                bindings
                    .create(&Default::default(), &new_binding(&name, &spec))
                    .await
                    .expect("create binding");
                expected.insert(name, spec);
            }
            Op::Update(i) => {
                let name = format!("crash-{i:02}");
                let managed = random_policies(&mut rng);
                let description = format!("step {step}");
                bindings
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"role": {
                            "managedPolicyArns": managed,
                            "description": description}}})),
                    )
                    .await
                    .expect("update binding");
                let spec = expected.get_mut(&name).expect("an updated binding lives");
                spec.managed = managed;
                spec.description = Some(description);
            }
            Op::Delete(i) => {
                let name = format!("crash-{i:02}");
                bindings
                    .delete(&name, &Default::default())
                    .await
                    .expect("delete binding");
                expected.remove(&name);
            }
            Op::Recreate(i) => {
                let name = format!("crash-{i:02}");
                let deadline = Instant::now() + WAIT;
                while bindings.get_opt(&name).await.expect("get").is_some() {
                    assert!(
                        Instant::now() < deadline,
                        "deleted binding {name} never went away (seed {seed}):\n{}",
                        log_tail()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let spec = CrashSpec {
                    managed: random_policies(&mut rng),
                    description: None,
                    inline: read_bucket(format!("bucket-{i}-again")),
                };
                recreated_at.insert(name.clone(), chrono::Utc::now());
                bindings
                    .create(&Default::default(), &new_binding(&name, &spec))
                    .await
                    .expect("create binding again");
                expected.insert(name, spec);
            }
        }
        if rng.random_bool(break_chance) {
            side.break_watches(&mut rng).await;
            watch_drops += 1;
        }
        if kill_after.contains(&step) {
            // Let it get into the middle of something, then SIGKILL and restart.
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
            let (calls, writes) = (aws.knobs().in_flight(), aws.knobs().writes_in_flight());
            // Dropping an Operator kills it with `Child::kill`, SIGKILL on Unix.
            drop(operator.take());
            kills += 1;
            kills_in_call += usize::from(calls > 0);
            kills_in_write += usize::from(writes > 0);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
            operator = Some(spawn_operator_with(
                &kubeconfig,
                CLUSTER,
                &local(&aws_url),
                None,
                RESYNC,
                &log,
                &RATES,
            ));
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
        }
    }
    aws.knobs().clear_faults();
    aws.knobs().set_latency(Duration::ZERO);
    for op in writes {
        aws.knobs().set_operation_latency(op, Duration::ZERO);
    }
    let churn_took = started.elapsed();
    // Faults are off from here on: the count is final.
    let churn: Vec<String> = vec![
        format!(
            "bindings: {BINDINGS} ({} operations: creates, updates, deletes, {RECREATED} \
             deleted bindings created again under their name)",
            ops.len()
        ),
        format!("SIGKILLs and restarts: {kills}"),
        format!(
            "SIGKILLs while an AWS call was in flight: {kills_in_call} (a write: \
             {kills_in_write}); AWS latency during the churn {} ms per read, {} ms per write",
            READ_LATENCY.as_millis(),
            WRITE_LATENCY.as_millis()
        ),
        format!("Kubernetes: {}", side.name()),
        match &side {
            CrashKube::Kubesim { .. } => format!("watch drops: {watch_drops}"),
            CrashKube::Real { plane, .. } => format!(
                "kube-apiserver SIGKILLs and restarts: {watch_drops} (kube-controller-manager \
                 found exited and started again: {})",
                plane.controller_manager_restarts()
            ),
        },
        format!(
            "AWS faults: {:.0}% of {} write kinds time out after their effect; {} injected",
            FAULT_FRACTION * 100.0,
            writes.len(),
            aws.knobs().injected_faults()
        ),
        format!(
            "EKS eventual consistency: role propagation {} s, association release {} s",
            PROPAGATION.as_secs(),
            RELEASE.as_secs()
        ),
        format!("churn took {:.1} s", churn_took.as_secs_f64()),
    ];
    report.write(
        &[
            churn.clone(),
            vec!["result: churn done, waiting for convergence (the test failed if this is the last line)".into()],
        ]
        .concat(),
    );

    // Convergence: live bindings Ready for their generation and each the owner of its
    // ServiceAccount; deleted ones gone with their ServiceAccounts (the garbage
    // collector's work on a real server); AWS holding one role and one association per
    // live binding. The ServiceAccounts of deleted bindings go through
    // kube-controller-manager's garbage collector on a real server, whose informers
    // resync slowly after the API server's restarts on a loaded machine: the deadline
    // leaves room for that.
    let deadline = Instant::now() + Duration::from_secs(240);
    let list = loop {
        let list = bindings.list(&Default::default()).await.expect("list");
        let names: Vec<String> = list
            .items
            .iter()
            .filter_map(|b| b.metadata.name.clone())
            .collect();
        let ready = list.items.iter().all(|b| {
            support::ready(b).is_some_and(|c| {
                c.status == "True" && c.observed_generation == b.metadata.generation
            })
        });
        let sa_list = sas.list(&Default::default()).await.expect("list SAs");
        let owner_of = |name: &str| {
            sa_list
                .items
                .iter()
                .find(|sa| sa.metadata.name.as_deref() == Some(name))
                .map(|sa| {
                    sa.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .map(|o| o.uid.clone())
                        .collect::<Vec<_>>()
                })
        };
        // Each live binding's ServiceAccount owned by it alone, and no ServiceAccount
        // left of a binding that is gone; those that are not, with their owners.
        let unsettled: Vec<String> = list
            .items
            .iter()
            .filter_map(|b| {
                let name = b.metadata.name.clone().unwrap_or_default();
                let owners = owner_of(&name);
                (owners != Some(vec![b.metadata.uid.clone().unwrap_or_default()]))
                    .then(|| format!("{name}: owners {owners:?}, binding {:?}", b.metadata.uid))
            })
            .chain(gone.iter().filter_map(|name| {
                owner_of(name).map(|owners| format!("{name} (gone): owners {owners:?}"))
            }))
            .collect();
        let sas_settled = unsettled.is_empty();
        let inv = aws.inventory();
        let settled = inv.roles.len() == expected.len() && inv.associations.len() == expected.len();
        if ready && settled && sas_settled && names == expected.keys().cloned().collect::<Vec<_>>()
        {
            break list;
        }
        if Instant::now() >= deadline {
            report.keep_operator_log(&log);
        }
        assert!(
            Instant::now() < deadline,
            "never converged (seed {seed}): bindings {names:?}, expected {:?}, \
             {} roles, {} associations, ServiceAccounts not settled: {unsettled:?}\n\
             statuses: {:?}\noperator log tail:\n{}",
            expected.keys().collect::<Vec<_>>(),
            inv.roles.len(),
            inv.associations.len(),
            list.items
                .iter()
                .map(|b| (b.metadata.name.clone(), support::ready(b).cloned()))
                .collect::<Vec<_>>(),
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let converged_after = started.elapsed() - churn_took;
    // The log so far, for a check below that fails; the whole log replaces it at the end.
    report.keep_operator_log(&log);

    // Every live binding's role, association, status and ServiceAccount are exactly
    // what its last spec asks for.
    let inv = aws.inventory();
    let role_path = format!("/pod-identity/{CLUSTER}/");
    for b in &list.items {
        let name = b.metadata.name.clone().unwrap_or_default();
        let spec = &expected[&name];
        let what = |field: &str| format!("{field} of {name} (seed {seed})");
        let tags = crash_ownership_tags(CLUSTER, &cluster_arn, &name);
        let role_name = naming::default_role_name(&cluster_arn, NS, &name);
        let role = inv
            .role(&role_name)
            .unwrap_or_else(|| panic!("no role for {name} (seed {seed})"));
        let role_arn = format!("arn:aws:iam::{ACCOUNT_ID}:role{role_path}{role_name}");
        assert_eq!(role.role.arn, role_arn, "{}", what("role ARN"));
        assert_eq!(role.role.path, role_path, "{}", what("role path"));
        assert_eq!(
            role.role.assume_role_policy,
            crash_trust_policy(&cluster_arn, &name),
            "{}",
            what("trust policy")
        );
        assert_eq!(role.role.tags, tags, "{}", what("role tags"));
        assert_eq!(
            role.role.description,
            spec.description,
            "{}",
            what("description")
        );
        assert_eq!(
            role.role.max_session_duration,
            3600,
            "{}",
            what("session duration")
        );
        assert_eq!(
            role.role.permissions_boundary_arn,
            None,
            "{}",
            what("boundary")
        );
        let mut attached = role.attached_policy_arns.clone();
        attached.sort();
        assert_eq!(attached, spec.managed, "{}", what("managed policies"));
        assert_eq!(
            role.inline_policies,
            BTreeMap::from([("read".to_owned(), spec.inline.clone())]),
            "{}",
            what("inline policies")
        );
        assert!(
            role.instance_profiles.is_empty(),
            "{}",
            what("instance profiles")
        );

        let assocs = inv.associations_for(NS, &name);
        assert_eq!(assocs.len(), 1, "{}", what("associations"));
        let assoc = assocs[0];
        assert_eq!(
            assoc.cluster_name,
            CLUSTER,
            "{}",
            what("association cluster")
        );
        assert_eq!(assoc.role_arn, role_arn, "{}", what("association role"));
        assert_eq!(assoc.tags, tags, "{}", what("association tags"));
        assert!(!assoc.disable_session_tags, "{}", what("session tags"));
        assert_eq!(assoc.target_role_arn, None, "{}", what("target role"));
        assert_eq!(assoc.session_policy, None, "{}", what("session policy"));
        assert_eq!(assoc.owner_arn, None, "{}", what("association owner"));

        let status = b.status.clone().unwrap_or_default();
        assert_eq!(
            status.observed_generation,
            b.metadata.generation,
            "{}",
            what("observedGeneration")
        );
        assert_eq!(
            status.role_arn.as_deref(),
            Some(role_arn.as_str()),
            "{}",
            what("status.roleArn")
        );
        assert_eq!(
            status.association_id.as_deref(),
            Some(assoc.association_id.as_str()),
            "{}",
            what("status.associationId")
        );
        assert_eq!(
            status.association_arn.as_deref(),
            Some(assoc.association_arn.as_str()),
            "{}",
            what("status.associationArn")
        );
        assert_eq!(
            status.service_account.map(|s| (s.name, s.created)),
            Some((name.clone(), true)),
            "{}",
            what("status.serviceAccount")
        );

        let sa = sas
            .get_opt(&name)
            .await
            .expect("get SA")
            .unwrap_or_else(|| panic!("no ServiceAccount for {name} (seed {seed})"));
        assert_eq!(
            sa.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "podidentity.dev/v1alpha1".into(),
                kind: "PodIdentityBinding".into(),
                name: name.clone(),
                uid: b.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            "{}",
            what("ServiceAccount ownerReferences")
        );
    }
    // Nothing left of the deleted bindings that were not created again.
    for name in &gone {
        assert!(bindings.get_opt(name).await.expect("get").is_none());
        assert!(
            inv.role(&naming::default_role_name(&cluster_arn, NS, name))
                .is_none()
                && inv.roles_tagged(naming::TAG_NAME, name).is_empty(),
            "orphaned role of {name} (seed {seed})"
        );
        assert!(
            inv.associations_for(NS, name).is_empty()
                && inv.associations_tagged(naming::TAG_NAME, name).is_empty(),
            "orphaned association of {name} (seed {seed})"
        );
        assert!(
            sas.get_opt(name).await.expect("get SA").is_none(),
            "orphaned ServiceAccount {name} (seed {seed})"
        );
    }
    assert_eq!(
        inv.roles.len(),
        expected.len(),
        "orphaned roles (seed {seed})"
    );
    assert_eq!(
        inv.associations.len(),
        expected.len(),
        "orphaned associations (seed {seed})"
    );
    // The eventual-consistency windows, as the operator met them.
    let association_ids = inv
        .associations
        .iter()
        .map(|a| (a.service_account.clone(), a.association_id.clone()))
        .collect();
    let answers = crash_eks_answers(
        &std::fs::read_to_string(&log).unwrap_or_default(),
        &recreated_at,
        &association_ids,
    );

    // At rest: two resyncs of every binding read AWS and write nothing, to AWS or to
    // Kubernetes.
    let kube_before = crash_kube_versions(&client).await;
    if let CrashKube::Kubesim { kube, .. } = &side {
        kube.reset_write_counts();
    }
    let aws_writes = write_calls(aws.knobs());
    let role_reads = aws.knobs().calls_of("GetRole");
    let quiet_from = Instant::now();
    let deadline = quiet_from + WAIT;
    while quiet_from.elapsed() < 2 * Duration::from_secs(RESYNC.into())
        || aws.knobs().calls_of("GetRole") < role_reads + 2 * expected.len() as u64
    {
        assert!(
            Instant::now() < deadline,
            "fewer than two resyncs of every binding (seed {seed}):\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quiet = quiet_from.elapsed();
    let resync_reads = aws.knobs().calls_of("GetRole") - role_reads;
    assert_eq!(
        write_calls(aws.knobs()),
        aws_writes,
        "AWS writes at rest (seed {seed}): {:?}",
        aws.knobs().calls()
    );
    if let CrashKube::Kubesim { kube, .. } = &side {
        assert_eq!(
            kube.write_counts().total(),
            0,
            "Kubernetes writes at rest (seed {seed}): {:?}",
            kube.write_counts()
        );
    }
    assert_eq!(
        crash_kube_versions(&client).await,
        kube_before,
        "Kubernetes writes at rest (seed {seed})"
    );

    let calls = aws.knobs().total_calls();
    report.write(
        &[
            churn,
            vec![
                format!(
                    "converged {:.1} s after the churn ({:.1} s in all)",
                    converged_after.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ),
                format!(
                    "EKS refusals the operator met: {} role not yet visible (propagation), \
                     {} ServiceAccount held by a deleted association (release), {} other \
                     association already there",
                    answers.propagating, answers.released, answers.in_use
                ),
                format!("AWS calls: {calls}"),
                format!(
                    "final inventory: {} roles, {} associations, {} live and {} deleted bindings \
                     (expected {} of each, none orphaned or duplicated)",
                    inv.roles.len(),
                    inv.associations.len(),
                    expected.len(),
                    gone.len(),
                    expected.len()
                ),
                format!(
                    "checked exact for each live binding: trust policy, ownership tags, \
                     description, session duration, boundary, managed and inline policies, \
                     association, status, ServiceAccount ownerReference; for each deleted \
                     one: no role, association or ServiceAccount left"
                ),
                format!(
                    "at rest for {:.1} s ({resync_reads} GetRole over {} bindings, resync {RESYNC} s): \
                     0 AWS writes, 0 Kubernetes writes (resourceVersions of {} bindings, \
                     ServiceAccounts and Events unchanged{})",
                    quiet.as_secs_f64(),
                    expected.len(),
                    kube_before.len(),
                    match side {
                        CrashKube::Kubesim { .. } => "; kubesim counted no write",
                        CrashKube::Real { .. } => "",
                    }
                ),
                "result: passed".into(),
            ],
        ]
        .concat(),
    );
    report.keep_operator_log(&log);
    assert!(kills >= 30);
    assert!(
        kills_in_call >= KILLS_IN_FLIGHT,
        "only {kills_in_call} SIGKILLs landed while an AWS call was in flight (seed {seed})"
    );
    assert!(
        answers.propagating >= 1,
        "EKS's propagation window was never met (seed {seed}): {answers:?}"
    );
    drop(operator);
    front.abort();
    side.stop().await;
}
