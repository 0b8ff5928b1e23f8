//! The monitoring in `config/monitoring/` against what the operator really exports.
//!
//! The operator binary runs as the Deployment runs it (leader election on, metrics
//! served) against kubesim over TCP and the AWS simulator's HTTP front. One binding
//! converges, one is refused by the guardrails, and the deletion of the first meets a
//! DeletePodIdentityAssociation that AWS throttles through all of the SDK's attempts
//! and then denies, so the counters also have their `throttled`, `access_denied` and
//! `result="error"` series. Then `/metrics` is scraped, and every PromQL expression of
//! the PrometheusRule and of the Grafana dashboard is parsed with `promql-parser` and
//! held against the scrape: every metric it selects is a sample name there (histogram
//! `_bucket`/`_sum`/`_count` and counter `_total` included), every label it matches,
//! groups by or matches vectors on is a label of those samples, and every fixed value
//! a matcher compares with (`outcome="throttled"`, `ready!="True"`, a regex of plain
//! alternatives) is one the scrape shows. The labels an alert's annotations
//! (`$labels.x`) and a panel's legend (`{{x}}`) print must be labels of the
//! expression's result. `job` and `instance` are the only labels allowed that the
//! operator does not export: Prometheus attaches them to every scraped series.
//!
//! The other tests read the files alone: the PrometheusRule's structure (groups; rules
//! with alert, expr, for, labels.severity, summary, description and a runbook_url whose
//! anchor is a runbook heading of docs/monitoring.md), the dashboard (valid JSON, every
//! panel with a query, the template variables), and `kubectl kustomize
//! config/monitoring` (the rule, the PodMonitor matching the Deployment's pods and its
//! metrics port, the dashboard ConfigMap labelled for Grafana's sidecar).
//!
//! Needs no test servers; the kustomize test needs the kubectl client.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, PostParams};
use pod_identity_operator::aws::faults::{Fault, Service};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::GuardrailConfig;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{NS, WAIT};

const CLUSTER: &str = "monitored";
const REGION: &str = "us-east-1";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
/// Labels Prometheus attaches to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// The files

/// The PrometheusRule as JSON.
fn prometheus_rule() -> Value {
    serde_yaml::from_str(&read("config/monitoring/prometheusrule.yaml"))
        .expect("config/monitoring/prometheusrule.yaml is YAML")
}

fn dashboard() -> Value {
    serde_json::from_str(&read("config/monitoring/grafana-dashboard.json"))
        .expect("config/monitoring/grafana-dashboard.json is JSON")
}

/// Every alerting rule: (alert name, the rule).
fn alerts(rule: &Value) -> Vec<(String, Value)> {
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
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String)> {
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
fn template_labels(text: &str) -> BTreeSet<String> {
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
fn legend_labels(legend: &str) -> BTreeSet<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|rest| Some(rest.split_once("}}")?.0.trim().to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The scrape

/// A scrape's samples: sample name → label name → the values seen.
#[derive(Debug, Default)]
struct Scrape {
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Scrape {
    /// Parses the text exposition (Prometheus or OpenMetrics): comments skipped, every
    /// sample line read as `name{label="value",...} value`.
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, labels) = parse_sample(line)
                .unwrap_or_else(|| panic!("unreadable sample line in the scrape: {line}"));
            let entry = scrape.series.entry(name).or_default();
            for (k, v) in labels {
                entry.entry(k).or_default().insert(v);
            }
        }
        scrape
    }

    /// True when some sample of `name` carries all of `labels`.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.series.get(name).is_some_and(|l| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).is_some_and(|vs| vs.contains(*v)))
        })
    }
}

fn parse_sample(line: &str) -> Option<(String, Vec<(String, String)>)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    if line[name_end..].starts_with('{') {
        let mut chars = line[name_end + 1..].chars();
        loop {
            let mut key = String::new();
            for c in chars.by_ref() {
                match c {
                    '=' => break,
                    '}' if key.is_empty() => return Some((name, labels)),
                    ',' if key.is_empty() => {}
                    c => key.push(c),
                }
            }
            if chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
    }
    Some((name, labels))
}

// ---------------------------------------------------------------------------------------
// PromQL against the scrape

/// Walks an expression, noting every reference the scrape does not back, and returns
/// the label names of the expression's result series.
struct Checker<'a> {
    scrape: &'a Scrape,
    /// Where the expression comes from, for the messages.
    context: String,
    problems: Vec<String>,
}

fn target_labels() -> BTreeSet<String> {
    TARGET_LABELS.iter().map(|s| (*s).to_owned()).collect()
}

/// The values a matcher compares with verbatim: the value of `=` and `!=` (an empty
/// one means "no such label" and names no value), and each alternative of a regex made
/// only of plain words joined by `|`.
fn fixed_values(m: &Matcher) -> Vec<String> {
    match &m.op {
        MatchOp::Equal | MatchOp::NotEqual if !m.value.is_empty() => vec![m.value.clone()],
        MatchOp::Re(_) | MatchOp::NotRe(_) => {
            let plain = m
                .value
                .split('|')
                .all(|w| !w.is_empty() && w.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if plain {
                m.value.split('|').map(str::to_owned).collect()
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

impl Checker<'_> {
    fn problem(&mut self, what: String) {
        self.problems.push(format!("{}: {what}", self.context));
    }

    fn check_subset(&mut self, what: &str, wanted: &BTreeSet<String>, have: &BTreeSet<String>) {
        for l in wanted.difference(have) {
            self.problem(format!(
                "{what} uses label `{l}`, which its operand does not have (it has {have:?})"
            ));
        }
    }

    fn selector(&mut self, vs: &VectorSelector) -> BTreeSet<String> {
        let matchers: Vec<&Matcher> = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
            .collect();
        let name = vs.name.clone().or_else(|| {
            matchers
                .iter()
                .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
                .map(|m| m.value.clone())
        });
        let Some(name) = name else {
            self.problem(format!("selector {vs} names no metric"));
            return target_labels();
        };
        let Some(labels) = self.scrape.series.get(&name) else {
            self.problem(format!("metric `{name}` is not in the scrape"));
            return target_labels();
        };
        let labels = labels.clone();
        for m in matchers {
            if m.name == "__name__" || TARGET_LABELS.contains(&m.name.as_str()) {
                continue;
            }
            let Some(values) = labels.get(&m.name) else {
                self.problem(format!(
                    "`{name}` has no label `{}` (it has {:?})",
                    m.name,
                    labels.keys().collect::<Vec<_>>()
                ));
                continue;
            };
            for v in fixed_values(m) {
                if !values.contains(&v) {
                    self.problem(format!(
                        "`{name}{{{}{}\"{v}\"}}`: the scrape has no `{}` value `{v}` (it has {values:?})",
                        m.name, m.op, m.name
                    ));
                }
            }
        }
        labels.keys().cloned().chain(target_labels()).collect()
    }

    fn walk(&mut self, e: &Expr) -> BTreeSet<String> {
        match e {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Paren(p) => self.walk(&p.expr),
            Expr::Unary(u) => self.walk(&u.expr),
            Expr::Subquery(s) => self.walk(&s.expr),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => BTreeSet::new(),
            Expr::Aggregate(a) => {
                let inner = self.walk(&a.expr);
                if let Some(p) = &a.param {
                    self.walk(p);
                }
                let op = a.op.to_string();
                match &a.modifier {
                    Some(LabelModifier::Include(by)) => {
                        let by: BTreeSet<String> = by.labels.iter().cloned().collect();
                        self.check_subset(&format!("{op} by"), &by, &inner);
                        by
                    }
                    Some(LabelModifier::Exclude(without)) => {
                        let without: BTreeSet<String> = without.labels.iter().cloned().collect();
                        self.check_subset(&format!("{op} without"), &without, &inner);
                        inner.difference(&without).cloned().collect()
                    }
                    None if ["topk", "bottomk", "limitk", "limit_ratio"].contains(&op.as_str()) => {
                        inner
                    }
                    None => BTreeSet::new(),
                }
            }
            Expr::Binary(b) => {
                let lhs = self.walk(&b.lhs);
                let rhs = self.walk(&b.rhs);
                let scalar = |e: &Expr| e.value_type() == ValueType::Scalar;
                match (scalar(&b.lhs), scalar(&b.rhs)) {
                    (true, true) => return BTreeSet::new(),
                    (true, false) => return rhs,
                    (false, true) => return lhs,
                    (false, false) => {}
                }
                let both: BTreeSet<String> = lhs.intersection(&rhs).cloned().collect();
                let either: BTreeSet<String> = lhs.union(&rhs).cloned().collect();
                let op = b.op.to_string();
                let modifier = b.modifier.as_ref();
                let matching = modifier.and_then(|m| m.matching.as_ref());
                match matching {
                    Some(LabelModifier::Include(on)) => {
                        let on = on.labels.iter().cloned().collect();
                        self.check_subset(&format!("`{op} on`"), &on, &both);
                    }
                    Some(LabelModifier::Exclude(ignoring)) => {
                        let ignoring = ignoring.labels.iter().cloned().collect();
                        self.check_subset(&format!("`{op} ignoring`"), &ignoring, &either);
                    }
                    None => {}
                }
                if b.op.is_set_operator() {
                    return if op == "or" { either } else { lhs };
                }
                match modifier.map(|m| &m.card) {
                    Some(VectorMatchCardinality::ManyToOne(extra)) => {
                        let extra: BTreeSet<String> = extra.labels.iter().cloned().collect();
                        self.check_subset("group_left", &extra, &rhs);
                        lhs.union(&extra).cloned().collect()
                    }
                    Some(VectorMatchCardinality::OneToMany(extra)) => {
                        let extra: BTreeSet<String> = extra.labels.iter().cloned().collect();
                        self.check_subset("group_right", &extra, &lhs);
                        rhs.union(&extra).cloned().collect()
                    }
                    _ => match matching {
                        Some(LabelModifier::Include(on)) => on.labels.iter().cloned().collect(),
                        Some(LabelModifier::Exclude(ignoring)) => {
                            let ignoring: BTreeSet<String> =
                                ignoring.labels.iter().cloned().collect();
                            lhs.difference(&ignoring).cloned().collect()
                        }
                        None => lhs,
                    },
                }
            }
            Expr::Call(c) => {
                let args: Vec<BTreeSet<String>> =
                    c.args.args.iter().map(|a| self.walk(a)).collect();
                match c.func.name {
                    "absent" | "absent_over_time" => match c.args.args.first().map(|a| &**a) {
                        Some(Expr::VectorSelector(vs)) => equality_labels(vs),
                        Some(Expr::MatrixSelector(ms)) => equality_labels(&ms.vs),
                        _ => BTreeSet::new(),
                    },
                    "histogram_quantile" => {
                        let mut buckets = args.get(1).cloned().unwrap_or_default();
                        if !buckets.remove("le") {
                            self.problem(
                                "histogram_quantile over series without an `le` label".into(),
                            );
                        }
                        buckets
                    }
                    "vector" | "time" | "scalar" | "pi" => BTreeSet::new(),
                    "label_replace" | "label_join" => {
                        let mut out = args.first().cloned().unwrap_or_default();
                        if let Some(Expr::StringLiteral(dst)) = c.args.args.get(1).map(|a| &**a) {
                            out.insert(dst.val.clone());
                        }
                        out
                    }
                    _ => c
                        .args
                        .args
                        .iter()
                        .zip(args)
                        .find(|(a, _)| {
                            matches!(a.value_type(), ValueType::Vector | ValueType::Matrix)
                        })
                        .map(|(_, l)| l)
                        .unwrap_or_default(),
                }
            }
            Expr::Extension(_) => {
                self.problem("an extension expression, which Prometheus does not have".into());
                BTreeSet::new()
            }
        }
    }
}

/// The labels `absent(sel)` returns: those of the selector's equality matchers.
fn equality_labels(vs: &VectorSelector) -> BTreeSet<String> {
    vs.matchers
        .matchers
        .iter()
        .filter(|m| m.op == MatchOp::Equal && m.name != "__name__")
        .map(|m| m.name.clone())
        .collect()
}

/// Parses `expr` and checks it against the scrape; returns the problems found.
fn check_expression(
    scrape: &Scrape,
    context: &str,
    expr: &str,
    printed: &BTreeSet<String>,
) -> Vec<String> {
    let parsed = match promql_parser::parser::parse(expr) {
        Ok(e) => e,
        Err(e) => return vec![format!("{context}: `{expr}` is not PromQL: {e}")],
    };
    let mut checker = Checker {
        scrape,
        context: context.to_owned(),
        problems: Vec::new(),
    };
    let result = checker.walk(&parsed);
    for l in printed.difference(&result) {
        checker.problem(format!(
            "prints label `{l}`, which the result of `{expr}` does not have (it has {result:?})"
        ));
    }
    checker.problems
}

/// Every reference of the PrometheusRule and of the dashboard checked against `scrape`.
fn check_against_scrape(scrape: &Scrape) -> Vec<String> {
    let mut problems = Vec::new();
    for (alert, rule) in alerts(&prometheus_rule()) {
        let annotations: String = rule["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_str())
            .chain(
                rule["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.as_str()),
            )
            .collect::<Vec<_>>()
            .join("\n");
        problems.extend(check_expression(
            scrape,
            &format!("alert {alert}"),
            rule["expr"].as_str().unwrap_or_default(),
            &template_labels(&annotations),
        ));
    }
    let dashboard = dashboard();
    for (panel, expr, legend) in dashboard_queries(&dashboard) {
        problems.extend(check_expression(
            scrape,
            &format!("panel \"{panel}\""),
            &expr,
            &legend_labels(&legend),
        ));
    }
    // The template variables' queries: label_values(metric, label).
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(query) = v["definition"].as_str() else {
            continue;
        };
        let name = v["name"].as_str().unwrap_or_default();
        let Some(args) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            problems.push(format!(
                "variable {name}: `{query}` is not label_values(metric, label)"
            ));
            continue;
        };
        let (metric, label) = args.split_once(',').unwrap_or(("", args));
        let (metric, label) = (metric.trim(), label.trim());
        match scrape.series.get(metric) {
            None => problems.push(format!(
                "variable {name}: metric `{metric}` is not in the scrape"
            )),
            Some(labels) if !labels.contains_key(label) && !TARGET_LABELS.contains(&label) => {
                problems.push(format!(
                    "variable {name}: `{metric}` has no label `{label}`"
                ))
            }
            Some(_) => {}
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The operator binary

/// The operator process; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn scrape_text(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .await
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Scrapes until `pred` holds for the scrape, at most `within`, and returns that
    /// scrape's text.
    async fn wait_scrape(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Scrape) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.scrape_text().await;
            if pred(&Scrape::parse(&text)) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("operator exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "never scraped {what}:\n{text}\n---\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts the operator binary as the Deployment runs it (leader election, metrics),
/// with JSON logs in `dir`, and reads the metrics address from its startup line.
fn spawn_operator(dir: &Path, aws_url: &str, guardrails: &Path) -> Operator {
    let log = dir.join("operator.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["run", "--cluster-name", CLUSTER, "--region", REGION])
        .args(["--aws-endpoint-url", aws_url])
        .arg("--config")
        .arg(guardrails)
        .args(["--leader-elect", "--leader-election-namespace", NS])
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("AWS_ACCESS_KEY_ID", "AKIAMONITORINGTESTS")
        .env("AWS_SECRET_ACCESS_KEY", "monitoring-test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("operator binary starts");
    let mut op = Operator {
        child,
        log,
        metrics: String::new(),
    };
    let deadline = Instant::now() + WAIT;
    op.metrics = loop {
        let start = std::fs::read_to_string(&op.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "pod-identity-operator starting");
        if let Some(addr) = start.as_ref().and_then(|l| l["metrics_addr"].as_str()) {
            break addr.to_owned();
        }
        if let Ok(Some(status)) = op.child.try_wait() {
            panic!("operator exited ({status}):\n{}", op.log_tail());
        }
        assert!(
            Instant::now() < deadline,
            "no startup line:\n{}",
            op.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    op
}

/// A plain HTTP/1.0 GET; `None` when nothing answers.
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .ok()?
        .ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

async fn wait_reason(bindings: &Api<PodIdentityBinding>, name: &str, status: &str, reason: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let b = bindings.get_opt(name).await.expect("get binding");
        if let Some(c) = b.as_ref().and_then(support::ready)
            && c.status == status
            && c.reason == reason
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got Ready={status} ({reason}): {:?}",
            b.and_then(|b| b.status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_of_the_rules_and_the_dashboard_is_exported() {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let (aws_url, front) = support::serve_simulator(aws.clone()).await;
    let (kube, server, dir) = support::kubesim_over_tcp().await;
    // Read-only access for everyone, nothing else: an administrator binding is refused.
    let guardrails = dir.path().join("guardrails.yaml");
    let rules = format!(
        "rules:\n- name: monitoring\n  namespaces: [\"*\"]\n  allowedManagedPolicyArns: [\"{READ_ONLY}\"]\n"
    );
    std::fs::write(&guardrails, &rules).expect("guardrails");
    support::enforce_rendered(
        &aws,
        CLUSTER,
        &GuardrailConfig::parse(&rules).expect("guardrails parse"),
    );

    let mut op = spawn_operator(dir.path(), &aws_url, &guardrails);
    op.wait_scrape("the metrics", WAIT, |s| {
        s.has("pod_identity_operator_build_info", &[])
    })
    .await;

    let bindings: Api<PodIdentityBinding> = Api::namespaced(kube.client(), NS);
    for (name, policy) in [("monitored-app", READ_ONLY), ("monitored-admin", ADMIN)] {
        let b: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"role": {"managedPolicyArns": [policy]}},
        }))
        .expect("binding");
        bindings
            .create(&PostParams::default(), &b)
            .await
            .expect("binding created");
    }
    wait_reason(&bindings, "monitored-app", "True", "Reconciled").await;
    wait_reason(&bindings, "monitored-admin", "False", "PolicyDenied").await;

    // The deletion's first DeletePodIdentityAssociation is throttled on every attempt
    // the SDK makes (5), and the operator's own retry of it is denied: the cleanup fails.
    // This takes most of the test's time, 40 to 60 s: once throttled, the SDK's adaptive
    // retry mode lets a retry go only every 8 s or so (its client-side rate limiter),
    // and a `throttled` outcome is counted only after the last attempt.
    let knobs = aws.knobs();
    let op_name = "DeletePodIdentityAssociation";
    let before = knobs.calls_of(op_name);
    for n in 1..=5 {
        knobs.fail_nth(op_name, before + n, Fault::throttling(Service::Eks));
    }
    knobs.fail_nth(
        op_name,
        before + 6,
        Fault::new(
            "AccessDeniedException",
            "not authorized to perform: eks:DeletePodIdentityAssociation",
        ),
    );
    bindings
        .delete("monitored-app", &DeleteParams::default())
        .await
        .expect("delete");

    let wanted: [(&str, &[(&str, &str)]); 6] = [
        ("pod_identity_operator_bindings", &[("ready", "True")]),
        (
            "pod_identity_operator_bindings",
            &[("ready", "False"), ("reason", "PolicyDenied")],
        ),
        (
            "pod_identity_operator_reconciles_total",
            &[("result", "ok"), ("reason", "PolicyDenied")],
        ),
        (
            "pod_identity_operator_aws_calls_total",
            &[("operation", op_name), ("outcome", "throttled")],
        ),
        (
            "pod_identity_operator_aws_calls_total",
            &[("operation", op_name), ("outcome", "access_denied")],
        ),
        (
            "pod_identity_operator_reconciles_total",
            &[("result", "error"), ("reason", "AccessDenied")],
        ),
    ];
    let text = op
        .wait_scrape("the throttled and denied deletion", 3 * WAIT, |s| {
            s.has(
                "pod_identity_operator_reconciles_total",
                &[("result", "error")],
            )
        })
        .await;
    let scrape = Scrape::parse(&text);
    for (metric, labels) in wanted {
        assert!(
            scrape.has(metric, labels),
            "no {metric} with {labels:?} in the scrape:\n{text}"
        );
    }
    assert!(
        scrape.has("pod_identity_operator_leader", &[])
            && text.contains("pod_identity_operator_leader 1"),
        "the operator leads:\n{text}"
    );

    let problems = check_against_scrape(&scrape);
    assert!(
        problems.is_empty(),
        "the rules and the dashboard use what the operator does not export:\n{}\n\nscrape:\n{text}",
        problems.join("\n")
    );

    drop(op);
    server.shutdown().await;
    front.abort();
}

/// The checker itself: what it must refuse.
#[test]
fn the_checker_refuses_unknown_metrics_labels_values_and_printed_labels() {
    let scrape = Scrape::parse(
        "# TYPE pod_identity_operator_reconcile_duration_seconds histogram\n\
         pod_identity_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n\
         pod_identity_operator_reconcile_duration_seconds_sum 0.1\n\
         pod_identity_operator_reconcile_duration_seconds_count 1\n\
         pod_identity_operator_aws_calls_total{service=\"eks\",operation=\"DescribeCluster\",outcome=\"ok\"} 3\n\
         # EOF\n",
    );
    let none = BTreeSet::new();
    let ok = |e: &str, printed: &[&str]| {
        let printed = printed.iter().map(|s| (*s).to_owned()).collect();
        let p = check_expression(&scrape, "t", e, &printed);
        assert!(p.is_empty(), "{e}: {p:?}");
    };
    let refused = |e: &str, printed: &BTreeSet<String>, why: &str| {
        let p = check_expression(&scrape, "t", e, printed);
        assert!(p.iter().any(|p| p.contains(why)), "{e}: {p:?} lacks {why}");
    };
    ok(
        "histogram_quantile(0.9, sum by (le) (rate(pod_identity_operator_reconcile_duration_seconds_bucket[5m])))",
        &[],
    );
    ok(
        "sum by (service, job) (rate(pod_identity_operator_aws_calls_total{outcome=\"ok\", job=~\".+\"}[5m])) / sum by (service) (rate(pod_identity_operator_aws_calls_total[5m])) > 0.05",
        &["service"],
    );
    ok(
        "sum by (operation) (rate(pod_identity_operator_aws_calls_total{outcome=~\"ok|ok\"}[5m])) or absent(pod_identity_operator_aws_calls_total{service=\"eks\"})",
        &["operation", "service"],
    );
    refused(
        "rate(pod_identity_operator_reconcile_duration_seconds[5m])",
        &none,
        "not in the scrape",
    );
    refused(
        "pod_identity_operator_aws_calls_total{reason=\"x\"}",
        &none,
        "has no label `reason`",
    );
    refused(
        "pod_identity_operator_aws_calls_total{outcome=\"throttled\"}",
        &none,
        "no `outcome` value `throttled`",
    );
    refused(
        "pod_identity_operator_aws_calls_total{outcome=~\"ok|quota\"}",
        &none,
        "no `outcome` value `quota`",
    );
    refused(
        "sum by (reason) (pod_identity_operator_aws_calls_total)",
        &none,
        "uses label `reason`",
    );
    refused(
        "sum(pod_identity_operator_aws_calls_total) > 0",
        &["service".to_owned()].into(),
        "prints label `service`",
    );
    refused("sum(", &none, "is not PromQL");
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
