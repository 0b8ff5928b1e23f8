//! The escalation analysis against an IAM policy analyser written elsewhere:
//! cloudsplaining (pinned in tests/servers/requirements.txt, installed into the test venv
//! by scripts/install-test-servers), run by tests/analysers/flag.py over a seeded corpus
//! of inline policies in one Python process.
//!
//! A policy counts as flagged by cloudsplaining when it has a PrivilegeEscalation
//! finding, or a ResourceExposure or InfrastructureModification finding for an IAM
//! action (flag.py says how they are asked for). Every flagged policy must be refused
//! by the operator under a rule allowing inline policies and no escalation. Every policy
//! the two judge differently is listed in [`DISAGREEMENTS`] with the reason.

#[path = "support/aws_servers.rs"]
mod aws_servers;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pod_identity_operator::Error;
use pod_identity_operator::crd::{PodIdentityBinding, PodIdentityBindingSpec};
use pod_identity_operator::guardrails::{GuardrailConfig, evaluate};
use serde_json::{Value, json};

use aws_servers::INSTALL;

/// The rule every corpus policy is judged under.
const RULE: &str = r#"
rules:
- name: tenants
  namespaces: [tenant]
  inlinePolicies: {allowed: true}
  allowedTargetRoleArns: ["arn:aws:iam::444455556666:role/ok-*"]
"#;

const CORPUS_SIZE: usize = 160;
const SEED: u64 = 0x5EED_1A4D_0001;

/// Which side refused or flagged a policy the other let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    /// Refused by the operator, not flagged by cloudsplaining.
    OperatorOnly,
    /// Flagged by cloudsplaining, admitted by the operator.
    AnalyserOnly,
}
use Side::*;

/// Why the two differ, shared by the entries of [`DISAGREEMENTS`].
const ASSUME: &str = "sts:AssumeRole or sts:TagSession (or a pattern reaching them) on `*` or \
    on a role outside allowedTargetRoleArns: cloudsplaining has no finding for them alone, it \
    counts sts:AssumeRole only within privilege-escalation methods that also need an IAM write";
const SERVICE_PATTERN: &str = "an action pattern with a wildcard in its service prefix (`i*:*`, \
    `*:*`, `*:AttachRolePolicy`, `*:PassRole`): policy_sentry does not expand it, so \
    cloudsplaining sees no action at all";
const NOT_ACTION_NARROW: &str = "Allow with NotAction on a DynamoDB table: the operator counts \
    every action but those listed (anyAction); cloudsplaining keeps only the actions whose \
    resource types match the ARNs, none of them IAM's";

/// Every policy of the corpus judged differently, by index. The operator's refusal names
/// the first statement it refuses; the reason is that statement's.
const DISAGREEMENTS: &[(usize, Side, &str)] = &[
    (4, OperatorOnly, ASSUME),
    (10, OperatorOnly, ASSUME),
    (17, OperatorOnly, ASSUME),
    (23, OperatorOnly, ASSUME),
    (49, OperatorOnly, NOT_ACTION_NARROW),
    (54, OperatorOnly, ASSUME),
    (66, OperatorOnly, SERVICE_PATTERN),
    (74, OperatorOnly, ASSUME),
    (84, OperatorOnly, ASSUME),
    (92, OperatorOnly, SERVICE_PATTERN),
    (93, OperatorOnly, ASSUME),
    (103, OperatorOnly, ASSUME),
    (117, OperatorOnly, SERVICE_PATTERN),
    (119, OperatorOnly, ASSUME),
    (128, OperatorOnly, SERVICE_PATTERN),
    (135, OperatorOnly, SERVICE_PATTERN),
    (143, OperatorOnly, ASSUME),
    (144, OperatorOnly, ASSUME),
];

/// splitmix64: a small deterministic generator, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const IAM_SENSITIVE: &[&str] = &[
    "iam:PassRole",
    "iam:CreateUser",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AddUserToGroup",
    "iam:AttachRolePolicy",
    "iam:AttachUserPolicy",
    "iam:PutRolePolicy",
    "iam:PutUserPolicy",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:UpdateAssumeRolePolicy",
    "iam:DeleteRolePermissionsBoundary",
    "iam:TagRole",
    "iam:CreateRole",
];
const IAM_READS: &[&str] = &[
    "iam:GetRole",
    "iam:ListRoles",
    "iam:ListAttachedRolePolicies",
    "iam:GetPolicyVersion",
    "iam:GenerateServiceLastAccessedDetails",
    "iam:SimulatePrincipalPolicy",
];
const STS: &[&str] = &["sts:AssumeRole", "sts:TagSession", "sts:GetCallerIdentity"];
const PATTERNS: &[&str] = &[
    "*",
    "*:*",
    "iam:*",
    "i*:*",
    "iam:Put*",
    "iam:*Policy",
    "iam:Attach*",
    "iam:Create*",
    "iam:Update*",
    "iam:Get*",
    "iam:List*",
    "iam:G*",
    "*:AttachRolePolicy",
    "*:PassRole",
    "IAM:PutRolePolicy",
    "Iam:CreateAccessKey",
    "iam:Put?olePolicy",
    "iam:?assRole",
    "sts:*",
    "sts:Assume*",
    "*:AssumeRole",
    "s3:*",
    "dynamodb:*",
    "s3:Get*",
];
const HARMLESS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:DeleteObject",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
];
const NOT_ACTIONS: &[&str] = &[
    "s3:*",
    "iam:*",
    "sts:*",
    "dynamodb:*",
    "iam:Get*",
    "*:*Role*",
];
const RESOURCES: &[&str] = &[
    "*",
    "*",
    "arn:aws:s3:::data-bucket/*",
    "arn:aws:dynamodb:eu-west-1:111122223333:table/orders",
    "arn:aws:iam::111122223333:role/app",
    "arn:aws:iam::111122223333:role/*",
    "arn:aws:iam::111122223333:user/ci",
    "arn:aws:iam::111122223333:policy/team-*",
    "arn:aws:iam::444455556666:role/ok-data",
    "arn:aws:iam::444455556666:role/deploy",
    "arn:aws:iam::*:role/break-glass",
];

/// One statement: its effect, its actions (or `NotAction`), resources (or
/// `NotResource`) and now and then a condition.
fn statement(rng: &mut Rng) -> Value {
    let effect = if rng.chance(12) { "Deny" } else { "Allow" };
    let mut st = serde_json::Map::new();
    st.insert("Effect".into(), json!(effect));
    if rng.chance(10) {
        let n = 1 + rng.below(2);
        let list: BTreeSet<&str> = (0..n).map(|_| rng.pick(NOT_ACTIONS)).collect();
        st.insert("NotAction".into(), json!(list));
    } else {
        let n = 1 + rng.below(3);
        let list: BTreeSet<&str> = (0..n)
            .map(|_| match rng.below(100) {
                0..25 => rng.pick(IAM_SENSITIVE),
                25..35 => rng.pick(IAM_READS),
                35..50 => rng.pick(STS),
                50..72 => rng.pick(PATTERNS),
                _ => rng.pick(HARMLESS),
            })
            .collect();
        st.insert("Action".into(), json!(list));
    }
    if rng.chance(5) {
        st.insert("NotResource".into(), json!(rng.pick(RESOURCES)));
    } else {
        let n = 1 + rng.below(2);
        let list: BTreeSet<&str> = (0..n).map(|_| rng.pick(RESOURCES)).collect();
        st.insert("Resource".into(), json!(list));
    }
    if rng.chance(10) {
        st.insert(
            "Condition".into(),
            json!({"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}),
        );
    }
    Value::Object(st)
}

fn corpus() -> Vec<Value> {
    let mut rng = Rng(SEED);
    (0..CORPUS_SIZE)
        .map(|_| {
            let n = 1 + rng.below(3);
            let statements: Vec<Value> = (0..n).map(|_| statement(&mut rng)).collect();
            json!({"Version": "2012-10-17", "Statement": statements})
        })
        .collect()
}

/// cloudsplaining's verdicts, one per policy in corpus order.
#[derive(Debug)]
struct Verdict {
    privilege_escalation: Vec<String>,
    iam_write: Vec<String>,
}

impl Verdict {
    fn flagged(&self) -> bool {
        !self.privilege_escalation.is_empty() || !self.iam_write.is_empty()
    }
}

fn analyse(policies: &[Value]) -> Vec<Verdict> {
    let python = aws_servers::venv_file("bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/analysers/flag.py");
    let mut child = Command::new(&python)
        .arg(&script)
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
    let out = child.wait_with_output().expect("analyser output");
    let written = writer.join().expect("writer thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/analysers/flag.py failed ({}); is cloudsplaining installed? run `{INSTALL}`:\n{stderr}",
        out.status
    );
    written.expect("policies written to the analyser");
    let stdout = String::from_utf8(out.stdout).expect("analyser output is UTF-8");
    let verdicts: Vec<Verdict> = stdout
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("analyser line {i} {line:?}: {e}"));
            assert_eq!(v["id"], json!(i), "analyser answers out of order");
            let list = |key: &str| -> Vec<String> {
                v[key]
                    .as_array()
                    .unwrap_or_else(|| panic!("analyser line {i} has no {key}: {line}"))
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            };
            Verdict {
                privilege_escalation: list("privilege_escalation"),
                iam_write: list("iam_write"),
            }
        })
        .collect();
    assert_eq!(
        verdicts.len(),
        policies.len(),
        "the analyser answered {} of {} policies:\n{stderr}",
        verdicts.len(),
        policies.len()
    );
    verdicts
}

/// The operator's verdict: the `PolicyDenied` message, or `None` when admitted.
fn operator(config: &GuardrailConfig, policy: &Value) -> Option<String> {
    let spec: PodIdentityBindingSpec =
        serde_json::from_value(json!({"role": {"inlinePolicies": {"p": policy}}}))
            .expect("binding spec");
    let mut binding = PodIdentityBinding::new("app", spec);
    binding.metadata.namespace = Some("tenant".into());
    match evaluate(&binding, &BTreeMap::new(), config) {
        Ok(_) => None,
        Err(Error::PolicyDenied { field, message, .. }) => Some(format!("{field}: {message}")),
        Err(e) => panic!("{policy}: {e}"),
    }
}

#[test]
fn every_policy_cloudsplaining_flags_is_refused_and_each_disagreement_is_explained() {
    let config = GuardrailConfig::parse(RULE).expect("rule");
    let policies = corpus();
    assert!(policies.len() >= 100);
    let verdicts = analyse(&policies);

    let mut found = BTreeMap::new();
    let (mut both, mut neither) = (0, 0);
    for (i, (policy, verdict)) in policies.iter().zip(&verdicts).enumerate() {
        let refused = operator(&config, policy);
        match (refused.is_some(), verdict.flagged()) {
            (true, true) => both += 1,
            (false, false) => neither += 1,
            (true, false) => {
                found.insert(i, (OperatorOnly, refused));
            }
            (false, true) => {
                found.insert(i, (AnalyserOnly, None));
            }
        }
    }
    println!(
        "{} policies: {both} refused and flagged, {neither} admitted and not flagged, {} \
         refused only by the operator, {} flagged only by cloudsplaining",
        policies.len(),
        found.values().filter(|(s, _)| *s == OperatorOnly).count(),
        found.values().filter(|(s, _)| *s == AnalyserOnly).count(),
    );

    let missed: Vec<String> = found
        .iter()
        .filter(|(_, (side, _))| *side == AnalyserOnly)
        .map(|(i, _)| format!("#{i} {} {:?}", policies[*i], verdicts[*i]))
        .collect();
    assert!(
        missed.is_empty(),
        "cloudsplaining flags policies the operator admits:\n{}",
        missed.join("\n")
    );

    let listed: BTreeMap<usize, Side> = DISAGREEMENTS.iter().map(|(i, s, _)| (*i, *s)).collect();
    assert_eq!(listed.len(), DISAGREEMENTS.len(), "a policy listed twice");
    let actual: BTreeMap<usize, Side> = found.iter().map(|(i, (s, _))| (*i, *s)).collect();
    if listed != actual {
        let unlisted: Vec<String> = found
            .iter()
            .filter(|(i, (s, _))| listed.get(i) != Some(s))
            .map(|(i, (s, why))| {
                format!(
                    "    ({i}, {s:?}, ...), // {} {:?} | {}",
                    policies[*i],
                    verdicts[*i],
                    why.as_deref().unwrap_or("")
                )
            })
            .collect();
        let stale: Vec<String> = listed
            .iter()
            .filter(|(i, s)| actual.get(i) != Some(s))
            .map(|(i, s)| format!("    ({i}, {s:?}): now {:?}", actual.get(i)))
            .collect();
        panic!(
            "DISAGREEMENTS is not the list of disagreements.\nunlisted:\n{}\nlisted but not \
             (or no longer) a disagreement:\n{}",
            unlisted.join("\n"),
            stale.join("\n")
        );
    }
    // Each listed reason fits the refusal it explains.
    for (i, _, reason) in DISAGREEMENTS {
        let why = found
            .get(i)
            .and_then(|(_, why)| why.as_deref())
            .unwrap_or_default();
        let fits = match *reason {
            ASSUME => {
                why.contains("allowedTargetRoleArns") || why.contains("(assumeRoleAnyResource)")
            }
            SERVICE_PATTERN => why
                .split('"')
                .nth(1)
                .is_some_and(|action| action.split(':').next().is_some_and(|s| s.contains('*'))),
            NOT_ACTION_NARROW => why.contains("\"NotAction\" escalates (anyAction)"),
            _ => false,
        };
        assert!(fits, "#{i}: {reason:?} does not explain {why:?}");
    }
    // The analyser did judge: it flags some of the corpus and not the rest.
    let flagged = verdicts.iter().filter(|v| v.flagged()).count();
    assert!(
        flagged >= 20 && flagged + 20 <= policies.len(),
        "{flagged} flagged"
    );
}
