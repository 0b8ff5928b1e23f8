//! The controller in-process with the SDK adapters against moto and ministack.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_adapters_create_update_delete_and_conflicts() {
    let target = Target::from_env();
    let cluster = target.cluster("wire");
    let (iam_access, eks_access, servers) = match target.aws {
        AwsTarget::Local => {
            let (moto, ministack) = tokio::join!(
                aws_servers::lease(Kind::Moto),
                aws_servers::lease(Kind::Ministack)
            );
            (
                local(&moto.url()),
                local(&ministack.url()),
                Some((moto, ministack)),
            )
        }
        _ => (target.aws_access(None), target.aws_access(None), None),
    };
    let eks_config = eks_access.sdk_config().await;
    if servers.is_some() {
        aws_servers::create_eks_cluster(&eks_config, &cluster).await;
    }
    let knobs = Knobs::new();
    let iam = Arc::new(Faulty::wrap(
        Arc::new(SdkIam::new(&iam_access.sdk_config().await)),
        knobs.clone(),
    ));
    let eks = Arc::new(Faulty::wrap(
        Arc::new(SdkEks::new(&eks_config)),
        knobs.clone(),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let tune =
        |s: &mut pod_identity_operator::controller::Settings| s.resync = Duration::from_millis(200);
    let (env, kube) = if target.external_kube() {
        let (kube, ns) = Kube::start_in(&target, dir.path(), "wire").await;
        let env = Env::start_on(
            kube.client.clone(),
            None,
            &ns,
            &cluster,
            iam.clone(),
            eks.clone(),
            tune,
        )
        .await;
        (env, Some(kube))
    } else {
        (
            Env::start(&cluster, iam.clone(), eks.clone(), tune).await,
            None,
        )
    };
    let ns = env.ns.clone();
    let ns = ns.as_str();
    let cluster_arn = eks
        .describe_cluster(&cluster)
        .await
        .expect("DescribeCluster")
        .expect("the cluster exists")
        .arn;

    // Create.
    env.apply("wire-app", json!({"tags": {"env": "e2e"}})).await;
    let b = env.wait_converged("wire-app").await;
    let role_name = naming::default_role_name(&cluster_arn, ns, "wire-app");
    let role = iam
        .get_role(&role_name)
        .await
        .expect("GetRole")
        .expect("role made");
    assert!(naming::owned_by(&role.tags, &cluster_arn, ns, "wire-app"));
    assert_eq!(role.path, format!("/pod-identity/{cluster}/"));
    let list = eks
        .list_pod_identity_associations(&cluster, Some(ns), Some("wire-app"))
        .await
        .expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(
        b.status.as_ref().and_then(|s| s.association_id.clone()),
        Some(list[0].association_id.clone())
    );

    // Converged over the wire: resyncs read (trust policies come URL-encoded) and
    // write nothing.
    let writes = write_calls(&knobs);
    let reads = knobs.calls_of("GetRole");
    let deadline = Instant::now() + WAIT;
    while knobs.calls_of("GetRole") < reads + 3 {
        assert!(Instant::now() < deadline, "no resyncs happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        write_calls(&knobs),
        writes,
        "writes while converged: {:?}",
        knobs.calls()
    );

    // Update: a managed policy and a description.
    env.bindings()
        .patch(
            "wire-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {"managedPolicyArns": [READ_ONLY], "description": "wire"}}})),
        )
        .await
        .expect("patch");
    env.wait_converged("wire-app").await;
    let attached = iam
        .list_attached_role_policies(&role_name)
        .await
        .expect("list attached");
    assert_eq!(
        attached.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(),
        [READ_ONLY]
    );
    let role = iam
        .get_role(&role_name)
        .await
        .expect("GetRole")
        .expect("role");
    assert_eq!(role.description.as_deref(), Some("wire"));

    // A conflict: a role of the derived name made by someone else.
    iam.create_role(&CreateRole {
        name: naming::default_role_name(&cluster_arn, ns, "taken"),
        path: "/".into(),
        assume_role_policy: pod_identity_trust_policy(None),
        ..CreateRole::default()
    })
    .await
    .expect("foreign role");
    env.apply("taken", json!({})).await;
    env.wait_ready("taken", "RoleConflict", |_, c| c.reason == "RoleConflict")
        .await;

    // Another: an association made elsewhere.
    eks.create_pod_identity_association(&CreateAssociation {
        cluster_name: cluster.clone(),
        namespace: ns.into(),
        service_account: "legacy".into(),
        role_arn: format!("arn:aws:iam::{ACCOUNT_ID}:role/legacy"),
        ..CreateAssociation::default()
    })
    .await
    .expect("foreign association");
    env.apply("legacy", json!({})).await;
    env.wait_ready("legacy", "AssociationConflict", |_, c| {
        c.reason == "AssociationConflict"
    })
    .await;
    // (Adoption itself tags the association, and ministack's TagResource refuses
    // association ARNs, which EKS accepts; the controller suite covers adoption.)

    // Delete: nothing of the binding is left in either server.
    env.delete("wire-app").await;
    env.wait_gone("wire-app").await;
    assert!(iam.get_role(&role_name).await.expect("GetRole").is_none());
    assert!(
        eks.list_pod_identity_associations(&cluster, Some(ns), Some("wire-app"))
            .await
            .expect("list")
            .is_empty()
    );
    // The bindings in conflict go without touching what someone else made; then the
    // test removes that too (another endpoint would keep it).
    for name in ["taken", "legacy"] {
        env.delete(name).await;
        env.wait_gone(name).await;
    }
    let foreign_role = naming::default_role_name(&cluster_arn, ns, "taken");
    assert!(
        iam.get_role(&foreign_role)
            .await
            .expect("GetRole")
            .is_some()
    );
    let foreign = eks
        .list_pod_identity_associations(&cluster, Some(ns), Some("legacy"))
        .await
        .expect("list");
    assert_eq!(foreign.len(), 1, "the foreign association stays");
    iam.delete_role(&foreign_role).await.expect("DeleteRole");
    eks.delete_pod_identity_association(&cluster, &foreign[0].association_id)
        .await
        .expect("DeletePodIdentityAssociation");
    env.stop().await;
    if let Some(kube) = kube {
        kube.stop().await;
    }
    drop(servers);
}
