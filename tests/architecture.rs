//! The modules of the operator's library and of each workspace crate depend on one
//! another without cycles: each crate's module graph, read from its sources, has no
//! strongly connected component of two or more modules once a module's uses of its own
//! ancestors (whose items it is part of) and a parent's uses of its own children are
//! set aside. A module depends on another when its code (not
//! its comments, not its unit tests) names it through `crate::`, `super::`, `self::` or,
//! from a parent, a child's name.
//!
//! Those uses of ancestors are checked apart, in every library crate: a module takes
//! nothing from the items of its parent (or any ancestor but the crate root) except
//! through a named sibling module (`super::context::Context`, not `super::Context`), so that a parent holds
//! declarations and wiring, and a child's dependencies are siblings the cycle check
//! sees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module file of the operator library (`crates/operator/src/`) but unit tests, by module path (`controller::plan`), with
/// its code.
fn modules() -> BTreeMap<Module, String> {
    modules_of("crates/operator/src")
}

/// [`modules`] of the crate whose sources are in `src` (relative to the workspace root).
fn modules_of(src: &str) -> BTreeMap<Module, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<Module, String>) {
        for entry in std::fs::read_dir(dir).expect("src directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under src");
                let mut module: Module = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                let text = std::fs::read_to_string(&path).expect("source");
                out.insert(module, text);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let mut raw = BTreeMap::new();
    walk(&root, &root, &mut raw);
    // Unit tests kept in files of their own are left out, with their children.
    let unit_tests: Vec<Module> = raw
        .iter()
        .filter(|(m, _)| {
            m.split_last().is_some_and(|(name, parent)| {
                raw.get(parent)
                    .is_some_and(|p| p.contains(&format!("#[cfg(test)]\nmod {name};")))
            })
        })
        .map(|(m, _)| m.clone())
        .collect();
    raw.into_iter()
        .filter(|(m, _)| !unit_tests.iter().any(|t| m.starts_with(t)))
        .map(|(m, text)| (m, code_of(&text)))
        .collect()
}

/// The code of a file: without comment lines and without its unit-test module.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths written in `code` that start with `crate`, `super` or `self`, as segments.
fn rooted_paths(code: &str) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            let mut segs = Vec::new();
            // A `use` list's members are its paths; the prefix before it is none.
            let mut grouped = false;
            let mut j = i;
            loop {
                let start = j;
                while j < bytes.len() && is_ident(bytes[j]) {
                    j += 1;
                }
                segs.push(bytes[start..j].iter().collect::<String>());
                if j + 2 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' {
                    j += 2;
                    // `use a::{b, c::d}`: each member is a path of its own.
                    if bytes[j] == '{' {
                        let mut depth = 0;
                        let mut k = j;
                        while k < bytes.len() {
                            match bytes[k] {
                                '{' => depth += 1,
                                '}' => {
                                    depth -= 1;
                                    if depth == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            k += 1;
                        }
                        let inner: String = bytes[j + 1..k.min(bytes.len())].iter().collect();
                        for member in split_top_level(&inner) {
                            let member = member.trim();
                            if member.is_empty() {
                                continue;
                            }
                            for tail in rooted_paths(&format!("x::{member}")) {
                                let mut full = segs.clone();
                                full.extend(tail.into_iter().skip(1));
                                paths.push(full);
                            }
                        }
                        j = k;
                        grouped = true;
                        break;
                    }
                    if j < bytes.len() && is_ident(bytes[j]) {
                        continue;
                    }
                }
                break;
            }
            if !grouped {
                paths.push(segs);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    paths
}

fn split_top_level(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// The module a path written in `from` leads to: the longest prefix that is a module.
fn resolve(from: &Module, path: &[String], modules: &BTreeMap<Module, String>) -> Option<Module> {
    let (mut base, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (from.clone(), &path[1..]),
        Some("super") => {
            let mut base = from.clone();
            let mut rest = path;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        Some(first) => {
            // A child's name, written bare.
            let mut child = from.clone();
            child.push(first.to_owned());
            if !modules.contains_key(&child) {
                return None;
            }
            (child, &path[1..])
        }
        None => return None,
    };
    for seg in rest {
        let mut next = base.clone();
        next.push(seg.clone());
        if modules.contains_key(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

/// Every use of an ancestor's own items (the crate root's aside) in every library
/// crate: the module (`crates/kubesim/src:resources::builtins`), and the path as
/// written.
fn uses_of_ancestors_items() -> Vec<(String, String)> {
    CRATE_SOURCES
        .iter()
        .flat_map(|src| {
            uses_of_ancestors_items_in(modules_of(src))
                .into_iter()
                .map(move |(module, path)| (format!("{src}:{module}"), path))
        })
        .collect()
}

/// [`uses_of_ancestors_items`] among `modules`, one crate's.
fn uses_of_ancestors_items_in(modules: BTreeMap<Module, String>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (module, code) in &modules {
        // `pub(super)` and `pub(crate)` say who may see an item, not where one comes from.
        let code = code
            .replace("pub(super)", "pub")
            .replace("pub(crate)", "pub");
        for path in rooted_paths(&code) {
            let Some(target) = resolve(module, &path, &modules) else {
                continue;
            };
            if !target.is_empty() && target.len() < module.len() && module.starts_with(&target) {
                found.push((module.join("::"), path.join("::")));
            }
        }
    }
    found
}

/// Modules allowed to take their parent's items: the operator's sandbox, whose children
/// use the constants and types of their parent.
const PARENTS_ITEMS_ALLOWED: [&str; 1] = ["crates/operator/src:sandbox"];

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    graph_of(modules())
}

/// The dependencies between `modules`, read from their code.
fn graph_of(modules: BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges = BTreeMap::new();
    for (module, code) in &modules {
        let mut deps = BTreeSet::new();
        for path in rooted_paths(code) {
            let Some(target) = resolve(module, &path, &modules) else {
                continue;
            };
            let related = target.starts_with(module) || module.starts_with(&target);
            if !related {
                deps.insert(target);
            }
        }
        edges.insert(module.clone(), deps);
    }
    edges
}

/// Strongly connected components of two or more modules (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        found: Vec<Vec<Module>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &Module) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on_stack.insert(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = &w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The sources of the operator and of each workspace crate.
const CRATE_SOURCES: [&str; 4] = [
    "crates/operator/src",
    "crates/kubesim/src",
    "crates/aws/src",
    "crates/aws-sim/src",
];

#[test]
fn the_module_graph_has_no_cycle() {
    for src in CRATE_SOURCES {
        let edges = graph_of(modules_of(src));
        let deps: usize = edges.values().map(BTreeSet::len).sum();
        eprintln!(
            "{src}: {} modules, {deps} dependencies between them",
            edges.len()
        );
        assert!(edges.len() > 3, "{src}: no modules read");
        let found: Vec<Vec<String>> = cycles(&edges)
            .into_iter()
            .map(|c| c.iter().map(|m| m.join("::")).collect())
            .collect();
        assert!(found.is_empty(), "{src}: import cycles: {found:?}");
    }
}

#[test]
fn no_module_takes_its_parents_items() {
    let found: Vec<String> = uses_of_ancestors_items()
        .into_iter()
        .filter(|(module, _)| {
            !PARENTS_ITEMS_ALLOWED
                .iter()
                .any(|allowed| module == allowed || module.starts_with(&format!("{allowed}::")))
        })
        .map(|(module, path)| format!("{module}: {path}"))
        .collect();
    assert!(
        found.is_empty(),
        "items taken from a parent rather than from a sibling module: {found:#?}"
    );
}

#[test]
fn the_checker_finds_a_cycle_and_reads_use_lists() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_owned).collect() };
    let edges = BTreeMap::from([
        (m("a"), BTreeSet::from([m("b")])),
        (m("b"), BTreeSet::from([m("c")])),
        (m("c"), BTreeSet::from([m("a")])),
        (m("d"), BTreeSet::from([m("a")])),
    ]);
    let found = cycles(&edges);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    let paths =
        rooted_paths("use super::{plan::{self, Action}, observe};\nlet x = crate::naming::f();");
    assert!(paths.contains(&vec!["super".into(), "plan".into(), "self".into()]));
    assert!(paths.contains(&vec!["super".into(), "observe".into()]));
    assert!(paths.contains(&vec!["crate".into(), "naming".into(), "f".into()]));
    // The real graph knows a dependency that exists.
    let edges = graph();
    assert!(edges[&m("controller::plan")].contains(&m("controller::observe")));
    assert!(edges[&m("guardrails::escalation")].contains(&m("glob")));
    // A child naming its parent's item is found; one naming a sibling, or the crate
    // root's re-exports, is not.
    let uses = uses_of_ancestors_items();
    let used = |module: &str, path: &str| uses.contains(&(module.to_owned(), path.to_owned()));
    let op = |module: &str| format!("crates/operator/src:{module}");
    assert!(used(&op("sandbox::legacy"), "super::CLUSTER"), "{uses:?}");
    assert!(
        !uses.iter().any(|(m, _)| *m == op("controller::apply")),
        "{uses:?}"
    );
    assert!(!used(&op("controller::apply"), "crate::Result"));
}

/// A pass's stages in the order a change to the spec travels them, after the watch
/// wakes the pass (both in `controller::reconcile`), which calls each in turn.
const PASS_STAGES: [&str; 5] = ["desired", "observe", "plan", "apply", "report"];

/// A change to `spec.role` goes watch and pass → desired → observe → plan → apply →
/// report (the status), six files, without returning to a stage it left: the watch is
/// in the pass's file, no stage depends on a later one, the status vocabulary every
/// stage may use (`controller::status`) depends on no stage, the pass names every
/// stage, and a binding's status is written by the report stage only.
#[test]
fn the_pass_runs_its_stages_forward() {
    let edges = graph();
    let controller = |name: &str| vec!["controller".to_owned(), name.to_owned()];
    let mut backwards = Vec::new();
    for (i, stage) in PASS_STAGES.iter().enumerate() {
        let deps = edges.get(&controller(stage)).expect("stage module exists");
        for later in &PASS_STAGES[i + 1..] {
            if deps.contains(&controller(later)) {
                backwards.push(format!("{stage} -> {later}"));
            }
        }
    }
    assert!(
        backwards.is_empty(),
        "stages depending on later ones: {backwards:?}"
    );
    let status_deps = &edges[&controller("status")];
    let stage_deps: Vec<_> = PASS_STAGES
        .iter()
        .filter(|s| status_deps.contains(&controller(s)))
        .collect();
    assert!(
        stage_deps.is_empty(),
        "status depends on stages: {stage_deps:?}"
    );
    let pass_deps = &edges[&controller("reconcile")];
    for stage in PASS_STAGES {
        assert!(
            pass_deps.contains(&controller(stage)),
            "the pass does not call {stage}"
        );
    }
    let code = modules();
    let holding = |needle: &str| -> Vec<String> {
        code.iter()
            .filter(|(_, text)| text.contains(needle))
            .map(|(m, _)| m.join("::"))
            .collect()
    };
    assert_eq!(
        holding("Controller::for_stream"),
        ["controller::reconcile"],
        "the watch is not in the pass's file"
    );
    let files = 1 + PASS_STAGES.len();
    assert!(files <= 6, "a spec change crosses {files} files");
    assert_eq!(
        holding(".patch_status("),
        ["controller::report"],
        "status writers"
    );
}

/// Where the workspace's Rust sources are, relative to its root.
const SOURCE_ROOTS: [&str; 4] = ["crates", "src", "tests", "benches"];

/// The longest a source file may be: one that grows past it holds more than one concern.
const MAX_LINES: usize = 800;

#[test]
fn no_source_file_is_over_800_lines() {
    fn walk(dir: &Path, out: &mut Vec<(String, usize)>) {
        for entry in std::fs::read_dir(dir).expect("directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path)
                    .expect("source")
                    .lines()
                    .count();
                out.push((path.display().to_string(), lines));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SOURCE_ROOTS {
        walk(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "sources not found: {}", files.len());
    let longest = files.iter().map(|(_, n)| *n).max().unwrap_or_default();
    eprintln!("{} source files, the longest {longest} lines", files.len());
    let over: Vec<_> = files.iter().filter(|(_, n)| *n > MAX_LINES).collect();
    assert!(over.is_empty(), "files over {MAX_LINES} lines: {over:?}");
}

/// The crates the image's binary is built from (`--no-default-features`, as the
/// Dockerfile builds it), as Cargo resolves them: neither kubesim nor the AWS simulator.
#[test]
fn the_image_build_has_no_test_server() {
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "--no-default-features",
            "--package",
            "pod-identity-operator",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    for expected in ["pod-identity-operator-lib", "pod-identity-aws", "kube"] {
        assert!(crates.contains(expected), "{expected} missing: {crates:?}");
    }
    for test_server in ["kubesim", "pod-identity-aws-sim"] {
        assert!(
            !crates.contains(test_server),
            "{test_server} is in the image build"
        );
    }
}
