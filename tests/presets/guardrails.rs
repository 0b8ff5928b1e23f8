//! Each preset passes the escalation analysis under a rule allowing it and is refused under one that does not.

use super::*;

// ---------------------------------------------------------------------------------------
// The escalation analysis

pub(crate) fn binding_with(presets: Vec<Value>) -> PodIdentityBinding {
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

pub(crate) fn rule(allowed_presets: &[&str], escalations: &[Escalation]) -> GuardrailConfig {
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
pub(crate) fn verdict(
    config: &GuardrailConfig,
    b: &PodIdentityBinding,
) -> Option<(String, String)> {
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
