//! `helm lint` with the default and the full values, and the values schema refusing bad
//! values with clear messages, message by message.

use crate::{CHART, RELEASE, SETTINGS, helm_err, helm_ok, values_file};

#[test]
fn chart_lints_with_default_and_full_values() {
    // clusterName and region have no default: with nothing else given, the schema
    // refuses the values, naming both.
    let bare = helm_err(&["lint", "--strict", CHART], None);
    assert!(
        bare.contains("missing properties 'clusterName', 'region'"),
        "{bare}"
    );
    // The defaults of every other value.
    let mut args = vec!["lint", "--strict", CHART];
    args.extend_from_slice(SETTINGS);
    let out = helm_ok(&args, None);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    let full = format!("{CHART}/ci/full-values.yaml");
    let out = helm_ok(&["lint", "--strict", CHART, "-f", &full], None);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
}

#[test]
fn schema_refuses_bad_values_with_clear_messages() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ok = "clusterName: my-cluster\nregion: us-east-1\n";
    // (values added to `ok`, the message helm must print)
    let cases: &[(&str, &str)] = &[
        ("", ""), // the valid base, rendered below
        (
            "clusterName: ''\n",
            "at '/clusterName': minLength: got 0, want 1",
        ),
        (
            "clusterName: 'my cluster'\n",
            "at '/clusterName': 'my cluster' does not match pattern",
        ),
        (
            "region: Ireland\n",
            "at '/region': 'Ireland' does not match pattern",
        ),
        (
            "replicaCount: 0\n",
            "at '/replicaCount': minimum: got 0, want 1",
        ),
        (
            "replicaCount: 1.5\n",
            "at '/replicaCount': got number, want integer",
        ),
        (
            "replicaCount: two\n",
            "at '/replicaCount': got string, want integer",
        ),
        (
            "leaderElection: {enabled: false}\n",
            "at '/replicaCount': maximum: got 2, want 1",
        ),
        (
            "replicas: 3\n",
            "at '': additional properties 'replicas' not allowed",
        ),
        (
            "image: {pullPolicy: Sometimes}\n",
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "extraArgs: [resync-interval=60]\n",
            "at '/extraArgs/0': 'resync-interval=60' does not match pattern '^--'",
        ),
        (
            "extraEnv: [{value: x}]\n",
            "at '/extraEnv/0': missing property 'name'",
        ),
        (
            "podDisruptionBudget: {enabled: true, minAvailable: half}\n",
            "at '/podDisruptionBudget/minAvailable': 'half' does not match pattern '^[0-9]+%$'",
        ),
        (
            "metrics: {serviceMonitor: {interval: 30}}\n",
            "at '/metrics/serviceMonitor/interval': got number, want string",
        ),
        (
            "guardrails: {rules: {platform: {}}}\n",
            "at '/guardrails/rules': got object, want array",
        ),
        (
            "guardrails: {rules: null}\n",
            "at '/guardrails': missing property 'rules'",
        ),
        (
            "guardrails: {rules: [{namespaces: [a]}]}\n",
            "at '/guardrails/rules/0': missing property 'name'",
        ),
        (
            "guardrails: {rules: [{name: a}]}\n",
            "at '/guardrails/rules/0': missing property 'namespaces'\n  - at '/guardrails/rules/0': missing property 'namespaceSelector'",
        ),
        (
            "guardrails: {rules: [{name: a, namespace: [a]}]}\n",
            "at '/guardrails/rules/0': additional properties 'namespace' not allowed",
        ),
        (
            "guardrails: {rules: [{name: a, namespaces: [a], allowEscalation: [everything]}]}\n",
            "at '/guardrails/rules/0/allowEscalation/0': value must be one of",
        ),
        (
            "guardrails: {rules: [{name: a, namespaces: [a], maxSessionDuration: 60}]}\n",
            "at '/guardrails/rules/0/maxSessionDuration': minimum: got 60, want 3,600",
        ),
    ];
    for (i, (extra, message)) in cases.iter().enumerate() {
        let file = values_file(
            tmp.path(),
            &format!("case{i}.yaml"),
            &format!("{ok}{extra}"),
        );
        let args = ["template", RELEASE, CHART, "-f", &file];
        if message.is_empty() {
            helm_ok(&args, None);
            continue;
        }
        let out = helm_err(&args, None);
        assert!(
            out.contains("values don't meet the specifications of the schema"),
            "{extra}: refused by the schema, not later:\n{out}"
        );
        assert!(
            out.contains(message),
            "{extra}: wanted {message:?} in:\n{out}"
        );
    }
    // `--set` alone, as people install.
    let out = helm_err(
        &["template", RELEASE, CHART, "--set", "region=us-east-1"],
        None,
    );
    assert!(out.contains("missing property 'clusterName'"), "{out}");
}
