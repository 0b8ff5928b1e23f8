//! The monitoring files read alone: the PrometheusRule's structure (groups; rules with
//! alert, expr, for, labels.severity, summary, description and a runbook_url whose anchor
//! is a runbook heading of docs/monitoring.md), the dashboard (valid JSON, every panel with
//! a query, the template variables), and `kubectl kustomize config/monitoring` (the rule,
//! the PodMonitor matching the Deployment's pods and its metrics port, the dashboard
//! ConfigMap labelled for Grafana's sidecar). Also the readers of those files the other
//! scenarios share.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::support;
use crate::support::files::{read, root};

const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// The PrometheusRule as JSON.
pub(crate) fn prometheus_rule() -> Value {
    serde_yaml::from_str(&read("config/monitoring/prometheusrule.yaml"))
        .expect("config/monitoring/prometheusrule.yaml is YAML")
}

pub(crate) fn dashboard() -> Value {
    serde_json::from_str(&read("config/monitoring/grafana-dashboard.json"))
        .expect("config/monitoring/grafana-dashboard.json is JSON")
}

/// Every alerting rule: (alert name, the rule).
pub(crate) fn alerts(rule: &Value) -> Vec<(String, Value)> {
    rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["alert"].as_str()?.to_owned(), r)))
        .collect()
}

/// Every panel, those nested in collapsed rows included.
fn panels(dashboard: &Value) -> Vec<Value> {
    fn collect(list: &Value, out: &mut Vec<Value>) {
        for p in list.as_array().into_iter().flatten() {
            collect(&p["panels"], out);
            out.push(p.clone());
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    out
}

/// The dashboard's template variables: name → type.
fn template_variables(dashboard: &Value) -> BTreeMap<String, String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A panel query with Grafana's variables replaced by what Prometheus could be sent:
/// the interval variables by a duration, a template variable by the regex of "All".
fn expand_grafana_variables(expr: &str, variables: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_owned();
    for builtin in ["__rate_interval", "__interval", "__range"] {
        out = out
            .replace(&format!("${{{builtin}}}"), "5m")
            .replace(&format!("${builtin}"), "5m");
    }
    let mut names: Vec<&String> = variables.keys().collect();
    // Longer names first, so `$jobs` is not read as `$job` followed by `s`.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), ".+")
            .replace(&format!("${name}"), ".+");
    }
    out
}

/// Every panel query: (panel title, expression as Prometheus would receive it, the
/// legend format).
pub(crate) fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let variables = template_variables(dashboard);
    panels(dashboard)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            let variables = &variables;
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    (
                        title.clone(),
                        expand_grafana_variables(t["expr"].as_str().unwrap_or_default(), variables),
                        t["legendFormat"].as_str().unwrap_or_default().to_owned(),
                    )
                })
        })
        .collect()
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// docs/monitoring.md's headings: (level, text).
fn doc_headings(doc: &str) -> Vec<(usize, String)> {
    let mut in_code = false;
    doc.lines()
        .filter_map(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                return None;
            }
            let level = l.chars().take_while(|c| *c == '#').count();
            (level > 0 && l[level..].starts_with(' '))
                .then(|| (level, l[level..].trim().to_owned()))
        })
        .collect()
}

/// The text of docs/monitoring.md under the heading whose anchor is `anchor`, up to the
/// next heading of the same or a higher level.
fn doc_section(doc: &str, wanted: &str) -> Option<String> {
    let mut out: Option<(usize, String)> = None;
    for line in doc.lines() {
        let level = line.chars().take_while(|c| *c == '#').count();
        let heading = level > 0 && line[level..].starts_with(' ');
        match &mut out {
            Some((l, _)) if heading && level <= *l => break,
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None if heading && anchor(&line[level..]) == wanted => {
                out = Some((level, String::new()));
            }
            None => {}
        }
    }
    out.map(|(_, text)| text)
}

/// The names `{{ $labels.x }}` templates print.
pub(crate) fn template_labels(text: &str) -> BTreeSet<String> {
    text.split("$labels.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The label names a Grafana legend format (`{{service}}:{{operation}}`) prints.
pub(crate) fn legend_labels(legend: &str) -> BTreeSet<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|rest| Some(rest.split_once("}}")?.0.trim().to_owned()))
        .collect()
}

#[test]
fn prometheus_rule_has_every_alert_with_severity_annotations_and_a_runbook() {
    let rule = prometheus_rule();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(
        rule["metadata"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    assert!(!groups.is_empty(), "no rule groups");
    let doc = read("docs/monitoring.md");
    let headings = doc_headings(&doc);
    let anchors: BTreeSet<String> = headings.iter().map(|(_, h)| anchor(h)).collect();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for g in groups {
        let group = g["name"].as_str().unwrap_or_default();
        assert!(!group.is_empty(), "a group without a name: {g}");
        let rules = g["rules"].as_array().expect("group rules");
        assert!(!rules.is_empty(), "group {group} has no rules");
        for r in rules {
            let Some(alert) = r["alert"].as_str() else {
                problems.push(format!("group {group}: a rule that is not an alert: {r}"));
                continue;
            };
            let mut p = |what: String| problems.push(format!("alert {alert}: {what}"));
            if !names.insert(alert.to_owned()) {
                p("named twice".into());
            }
            let expr = r["expr"].as_str().unwrap_or_default();
            if let Err(e) = promql_parser::parser::parse(expr) {
                p(format!("expr `{expr}` is not PromQL: {e}"));
            }
            match r["for"].as_str() {
                Some(d) => {
                    if let Err(e) = promql_parser::util::parse_duration(d) {
                        p(format!("for `{d}`: {e}"));
                    }
                }
                None => p("no `for`".into()),
            }
            let severity = r["labels"]["severity"].as_str().unwrap_or_default();
            if !SEVERITIES.contains(&severity) {
                p(format!(
                    "labels.severity `{severity}` is none of {SEVERITIES:?}"
                ));
            }
            for key in ["summary", "description", "runbook_url"] {
                if r["annotations"][key]
                    .as_str()
                    .is_none_or(|s| s.trim().is_empty())
                {
                    p(format!("no annotations.{key}"));
                }
            }
            let url = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
            let Some((page, fragment)) = url.split_once('#') else {
                p(format!("runbook_url `{url}` has no anchor"));
                continue;
            };
            if !page.starts_with("https://") || !page.ends_with("/docs/monitoring.md") {
                p(format!("runbook_url `{url}` is not docs/monitoring.md"));
            }
            if !anchors.contains(fragment) {
                p(format!(
                    "runbook_url anchor #{fragment} is no heading of docs/monitoring.md"
                ));
            } else {
                let section = doc_section(&doc, fragment).unwrap_or_default();
                for part in ["**Means:**", "**Check:**", "**Fix:**"] {
                    if !section.contains(part) {
                        p(format!("its runbook (#{fragment}) has no {part} paragraph"));
                    }
                }
            }
            if !doc.contains(&format!("| [`{alert}`](#{fragment}) |")) {
                p("not in docs/monitoring.md's alerts table".into());
            }
        }
    }
    // Every runbook of the docs is an alert's.
    let runbooks: BTreeSet<String> = headings
        .iter()
        .filter(|(level, h)| *level == 3 && h.starts_with("PodIdentity"))
        .map(|(_, h)| h.clone())
        .collect();
    assert_eq!(
        runbooks, names,
        "runbook headings of docs/monitoring.md vs alerts"
    );
    for wanted in [
        "PodIdentityBindingsNotReady",
        "PodIdentityAwsAccessDenied",
        "PodIdentityAwsThrottled",
        "PodIdentityReconcileErrors",
        "PodIdentityOperatorNoLeader",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboard_is_valid_and_every_panel_has_a_query() {
    let dashboard = dashboard();
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = template_variables(&dashboard);
    assert_eq!(
        variables.get("datasource").map(String::as_str),
        Some("datasource"),
        "a datasource variable, so the dashboard works with any Prometheus"
    );
    let panels = panels(&dashboard);
    assert!(!panels.is_empty(), "no panels");
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or_default();
        let mut problem = |what: &str| problems.push(format!("panel \"{title}\": {what}"));
        if title.is_empty() {
            problem("no title");
        }
        if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            problem("no id, or one another panel has");
        }
        for k in ["x", "y", "w", "h"] {
            if !p["gridPos"][k].is_u64() {
                problem("no gridPos");
                break;
            }
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problem("datasource is not ${datasource}");
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if !targets
            .iter()
            .any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
        {
            problem("no target with a query");
        }
        for t in &targets {
            let expr = expand_grafana_variables(t["expr"].as_str().unwrap_or_default(), &variables);
            if expr.contains('$') {
                problem(&format!("`{expr}` uses an unknown variable"));
            }
            if let Err(e) = promql_parser::parser::parse(&expr) {
                problem(&format!("`{expr}` is not PromQL: {e}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let titles: Vec<String> = panels
        .iter()
        .filter_map(|p| p["title"].as_str().map(str::to_lowercase))
        .collect();
    for wanted in [
        "ready",
        "reason",
        "reconcile rate",
        "latency",
        "aws calls",
        "throttl",
        "leader",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel about {wanted}: {titles:?}"
        );
    }
}

#[test]
fn kustomization_renders_the_rule_the_pod_monitor_and_the_dashboard_config_map() {
    let out = Command::new(support::kubectl::kubectl_path())
        .arg("kustomize")
        .arg(root().join("config/monitoring"))
        .output()
        .expect("kubectl kustomize runs");
    assert!(
        out.status.success(),
        "kubectl kustomize config/monitoring: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let objects: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in config/monitoring:\n{text}"))
    };
    assert_eq!(objects.len(), 3, "{text}");
    for o in &objects {
        assert_eq!(o["metadata"]["namespace"], "pod-identity-system", "{o}");
    }
    assert_eq!(find("PrometheusRule")["spec"], prometheus_rule()["spec"]);

    let cm = find("ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = cm["data"]["grafana-dashboard.json"]
        .as_str()
        .expect("the dashboard in the ConfigMap");
    assert_eq!(json, read("config/monitoring/grafana-dashboard.json"));

    // The PodMonitor selects the Deployment's pods and scrapes its metrics port.
    let manager: Value = serde_yaml::from_str(&read("config/manager/manager.yaml")).expect("YAML");
    let pod_labels = &manager["spec"]["template"]["metadata"]["labels"];
    let pm = find("PodMonitor");
    for (k, v) in pm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&pod_labels[k], v, "the PodMonitor's selector {k}");
    }
    let ports: Vec<&str> = manager["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    assert!(
        ports.contains(&endpoint["port"].as_str().unwrap_or_default()),
        "the PodMonitor's port is one of {ports:?}"
    );
    assert_eq!(endpoint["path"], "/metrics");
}
