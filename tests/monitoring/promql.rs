//! PromQL against a scrape: the text exposition parsed into samples and labels, and the
//! checker that walks an expression (parsed with `promql-parser`) noting every metric,
//! label and fixed value the scrape does not back, and the labels an alert's annotations
//! or a panel's legend print that the result does not carry. Its own test: it refuses
//! unknown metrics, labels, values and printed labels.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality, VectorSelector};

use crate::artifacts::{
    alerts, dashboard, dashboard_queries, legend_labels, prometheus_rule, template_labels,
};

/// Labels Prometheus attaches to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// A scrape's samples: sample name → label name → the values seen.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    pub(crate) series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Scrape {
    /// Parses the text exposition (Prometheus or OpenMetrics): comments skipped, every
    /// sample line read as `name{label="value",...} value`.
    pub(crate) fn parse(text: &str) -> Scrape {
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
    pub(crate) fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
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
pub(crate) fn check_against_scrape(scrape: &Scrape) -> Vec<String> {
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
