//! The audit's report: its JSON shape and its table for people.

use serde::{Deserialize, Serialize};

use super::model::{Finding, Severity};

/// The audit's answer for scripts (`-o json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub cluster: String,
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when a finding is at or above `fail_on`.
    pub fn fails(&self, fail_on: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= fail_on)
    }
}

/// Rows as an aligned text table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The report for people: one row per finding, and a count per severity.
pub fn render_table(report: &Report) -> String {
    if report.findings.is_empty() {
        return format!("cluster {}: no findings\n", report.cluster);
    }
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                f.severity.to_string().to_uppercase(),
                format!("{:?}", f.kind),
                f.subject.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    let count = |s| report.findings.iter().filter(|f| f.severity == s).count();
    format!(
        "{}\ncluster {}: {} error(s), {} warning(s), {} info\n",
        table(&["SEVERITY", "KIND", "SUBJECT", "MESSAGE"], &rows),
        report.cluster,
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    )
}
