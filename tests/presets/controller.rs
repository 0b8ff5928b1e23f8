//! Each variant becomes Ready in the controller against the authorizing AWS simulator, on kubesim and on a real kube-apiserver; a preset outside the allowed ones is PolicyDenied.

use super::*;

// ---------------------------------------------------------------------------------------
// The controller

/// Every preset allowed, and the IAM writes karpenter's document holds.
const ADDONS_RULE: &str = r#"
rules:
- name: addons
  namespaces: ["*"]
  allowedPresets: ["*"]
  allowEscalation: [iamWrite]
  allowedManagedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
  inlinePolicies: {allowed: true}
"#;

/// A binding name of at most 63 characters for the variant at `index`.
fn binding_name(v: &Variant, index: usize) -> String {
    format!("{}-{index}", v.preset.name)
}

crate::both!(
    every_preset_variant_becomes_ready_with_exactly_its_policies,
    every_preset_variant_becomes_ready_with_exactly_its_policies_on_a_real_apiserver,
    every_variant_ready
);

/// One binding per variant, and one combining two presets with a managed policy and an
/// inline policy of its own, all at once in one namespace: each becomes Ready and its
/// role holds exactly what the presets render for the simulator's cluster (plus its own
/// policies), and an EBS CSI binding without parameters holds AmazonEBSCSIDriverPolicy
/// and nothing else.
async fn every_variant_ready(server: ApiServer) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let cluster = aws.add_cluster(CLUSTER);
    let ctx = Context::of_cluster_arn(&cluster.arn).expect("cluster ARN");
    let guardrails = GuardrailConfig::parse(ADDONS_RULE).expect("rule");
    let op = apiserver::start(
        server,
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, move |s| {
            s.guardrails = Arc::new(GuardrailSource::fixed(guardrails));
        }),
    )
    .await;

    let all = variants();
    for (i, v) in all.iter().enumerate() {
        op.apply(
            &binding_name(v, i),
            json!({"role": {"presets": [v.reference()]}}),
        )
        .await;
    }
    let own = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/*"}]});
    op.apply(
        "combined",
        json!({"role": {
            "presets": [
                {"name": "external-dns", "parameters": {"hostedZoneIds": "Z1ABC"}},
                {"name": "aws-ebs-csi-driver"}
            ],
            "managedPolicyArns": [support::READ_ONLY],
            "inlinePolicies": {"own": own},
        }}),
    )
    .await;

    let mut expected = Vec::new();
    for (i, v) in all.iter().enumerate() {
        let r = v.render(&ctx);
        let mut managed = r.managed_policy_arns.clone();
        managed.sort();
        let inline: BTreeMap<String, Value> = r.inline_policy.into_iter().collect();
        expected.push((binding_name(v, i), v.id(), managed, inline));
    }
    let dns = presets::render(
        presets::get("external-dns").expect("preset"),
        &[("hostedZoneIds".to_owned(), "Z1ABC".to_owned())].into(),
        &ctx,
        "f",
    )
    .expect("renders")
    .inline_policy
    .expect("inline");
    expected.push((
        "combined".into(),
        "combined".into(),
        vec![
            "arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned(),
            "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy".to_owned(),
        ],
        [dns, ("own".to_owned(), own)].into_iter().collect(),
    ));

    let mut ebs_plain = 0;
    for (name, id, managed, inline) in &expected {
        let bound = op.wait_converged(name).await;
        let arn = bound
            .status
            .as_ref()
            .and_then(|s| s.role_arn.clone())
            .unwrap_or_else(|| panic!("{id}: no status.roleArn"));
        let role_name = pod_identity_operator::naming::parse_role_arn(&arn)
            .expect("a role ARN")
            .name;
        let inv = aws.inventory();
        let role = inv
            .role(&role_name)
            .unwrap_or_else(|| panic!("{id}: role {role_name} missing"));
        let mut attached = role.attached_policy_arns.clone();
        attached.sort();
        assert_eq!(&attached, managed, "{id}: managed policies of {role_name}");
        assert_eq!(
            &role.inline_policies, inline,
            "{id}: inline policies of {role_name}"
        );
        if id == "aws-ebs-csi-driver (required)" {
            assert_eq!(
                attached,
                ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"]
            );
            assert!(role.inline_policies.is_empty());
            ebs_plain += 1;
        }
        assert!(
            inv.associations
                .iter()
                .any(|a| a.role_arn == arn && a.namespace == op.ns),
            "{id}: no association for {arn}"
        );
    }
    assert_eq!(ebs_plain, 1);
    assert_eq!(aws.inventory().roles.len(), expected.len());
    op.stop().await;
}

/// A preset the guardrails do not allow leaves the binding PolicyDenied before any AWS
/// write, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_outside_allowed_presets_is_policy_denied_before_any_aws_write() {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let guardrails = GuardrailConfig::parse(
        r#"
rules:
- name: dns-only
  namespaces: ["*"]
  allowedPresets: ["external-dns", "cert-*"]
"#,
    )
    .expect("rule");
    let op = apiserver::start(
        ApiServer::Kubesim,
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, move |s| {
            s.guardrails = Arc::new(GuardrailSource::fixed(guardrails));
        }),
    )
    .await;
    op.apply(
        "lb",
        json!({"role": {"presets": [{"name": "aws-load-balancer-controller"}]}}),
    )
    .await;
    op.apply(
        "certs",
        json!({"role": {"presets": [{"name": "cert-manager"}]}}),
    )
    .await;
    op.wait_converged("certs").await;
    let denied = op
        .wait_ready("lb", "PolicyDenied", |_, c| {
            c.status == "False" && c.reason == "PolicyDenied"
        })
        .await;
    let message = support::ready(&denied)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("spec.role.presets[0].name") && message.contains("allowedPresets"),
        "{message}"
    );
    assert_eq!(aws.inventory().roles.len(), 1, "only cert-manager's role");
    op.stop().await;
}
