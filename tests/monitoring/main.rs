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
//!
//! By scenario: `scrape` runs the operator binary and holds the expressions against its
//! `/metrics`, with the checker of `promql`; `artifacts` reads the files alone.

#[path = "../support/mod.rs"]
mod support;

mod artifacts;
mod promql;
mod scrape;
