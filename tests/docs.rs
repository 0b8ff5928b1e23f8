//! The README and `docs/`: the README stays under 10 KiB, every relative link points at a
//! file (and heading) that exists, every repository path they name exists, and every
//! shell command is run by a test or by CI.
//!
//! Each fenced `sh`/`bash` block of `README.md` and `docs/*.md` is preceded by a comment
//! saying what runs it:
//!
//! - `<!-- run by: tests/docs.rs -->`: one of the [`SESSIONS`] below runs the block as
//!   the docs give it, in a scratch folder holding the repository's `examples/`,
//!   `crds/` and `config/`, with the compiled binary on `PATH` as `pod-identity-operator`
//!   (`cargo run --release --` and `cargo run --` stand for it) and the sandbox's AWS
//!   port in place of `PORT`. A session may start a server (the sandbox, kubesim) from
//!   the first command of its first block, as the docs start it, and run the rest
//!   against it.
//! - `<!-- run by: FILE -->`: FILE (a test or a script) holds every command of the block,
//!   whitespace aside (in a string, quotes escaped, counts).
//! - `<!-- not run: WHY -->`: the commands need what no test machine has (an AWS
//!   account, an EKS cluster, a container runtime); each is listed in [`NOT_RUN`], so a
//!   new one fails here until someone decides it cannot be run.
//!
//! Needs the kubectl client, curl and diff.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_pod-identity-operator");
/// What this file runs, in the marker of a block it runs.
const HERE: &str = "tests/docs.rs";
/// GitHub shows a README up to here without asking to scroll through a manual.
const README_MAX_BYTES: usize = 10 * 1024;
/// How long a session or its server may take.
const WAIT: Duration = Duration::from_secs(300);

/// A server a session starts from the first command of its first block.
struct Server {
    /// The command as the docs write it.
    command: &'static str,
    /// A line the server prints once it serves.
    ready: &'static str,
    /// A printed line (`label http://127.0.0.1:PORT...`) whose port replaces `PORT`.
    port_from: Option<&'static str>,
}

/// Blocks run in one shell, in order, against one server.
struct Session {
    name: &'static str,
    server: Option<Server>,
    /// Each block by its document and its first command.
    blocks: &'static [(&'static str, &'static str)],
    /// Text the session's output must hold: what the docs say the commands show.
    shows: &'static [&'static str],
}

const SESSIONS: &[Session] = &[
    Session {
        name: "local",
        server: None,
        blocks: &[
            ("docs/operating.md", "pod-identity-operator run --help"),
            ("docs/presets.md", "pod-identity-operator presets"),
            ("docs/guardrails.md", "pod-identity-operator iam-policy"),
            ("docs/installing.md", "pod-identity-operator crd"),
        ],
        shows: &[
            "--cluster-name",
            "--shutdown-timeout",
            "aws-load-balancer-controller",
            "velero-backups-prod",
        ],
    },
    Session {
        name: "sandbox",
        server: Some(Server {
            command: "cargo run --release -- sandbox",
            ready: "Ctrl-C stops the sandbox.",
            port_from: Some("AWS endpoint (IAM, EKS):"),
        }),
        blocks: &[
            ("README.md", "cargo run --release -- sandbox"),
            ("README.md", "kubectl apply -n shop"),
            ("docs/testing.md", "curl -s http://127.0.0.1:PORT/inventory"),
            (
                "docs/monitoring.md",
                "kubectl get pib -A -o custom-columns=",
            ),
            ("docs/migration.md", "export KUBECONFIG="),
        ],
        // The role the README's first binding makes, in the inventory.
        shows: &["pi-sandbox-shop-s3-reader-"],
    },
    Session {
        name: "kubesim",
        server: Some(Server {
            command: "cargo run -- kubesim --port 0 --kubeconfig-out kubesim.kubeconfig",
            ready: "kubesim serving on",
            port_from: None,
        }),
        blocks: &[("docs/testing.md", "cargo run -- kubesim")],
        shows: &["podidentitybindings.podidentity.dev created"],
    },
];

/// Commands the docs give that no test here can run, each under a `<!-- not run: ... -->`
/// block saying why.
const NOT_RUN: &[&str] = &[
    // docs/installing.md: from an empty EKS cluster to a Ready binding.
    "CLUSTER=my-cluster",
    "REGION=us-east-1",
    "ACCOUNT=$(aws sts get-caller-identity --query Account --output text)",
    "REGISTRY=$ACCOUNT.dkr.ecr.$REGION.amazonaws.com",
    "VERSION=$(cargo pkgid | cut -d@ -f2)",
    "aws eks create-addon --cluster-name $CLUSTER --region $REGION --addon-name eks-pod-identity-agent",
    "aws ecr create-repository --repository-name pod-identity-operator --region $REGION",
    "aws ecr get-login-password --region $REGION | docker login --username AWS --password-stdin $REGISTRY",
    "docker build --build-arg VERSION=$VERSION -t $REGISTRY/pod-identity-operator:$VERSION .",
    "docker push $REGISTRY/pod-identity-operator:$VERSION",
    "aws iam create-policy --policy-name pod-identity-operator \
     --policy-document file://config/iam/operator-policy.json",
    "docker run --rm $REGISTRY/pod-identity-operator:$VERSION iam-policy --document trust \
     --cluster-name $CLUSTER --account $ACCOUNT --region $REGION > operator-trust.json",
    "aws iam create-role --role-name pod-identity-operator \
     --assume-role-policy-document file://operator-trust.json",
    "aws iam attach-role-policy --role-name pod-identity-operator \
     --policy-arn arn:aws:iam::$ACCOUNT:policy/pod-identity-operator",
    "aws eks create-pod-identity-association --cluster-name $CLUSTER --region $REGION \
     --namespace pod-identity-system --service-account pod-identity-operator \
     --role-arn arn:aws:iam::$ACCOUNT:role/pod-identity-operator",
    "cat > values.yaml <<EOF",
    "helm install pod-identity-operator charts/pod-identity-operator \
     --namespace pod-identity-system --create-namespace -f values.yaml",
    "kubectl label namespace pod-identity-system pod-security.kubernetes.io/enforce=restricted",
    "kubectl -n pod-identity-system rollout status deployment/pod-identity-operator",
    "kubectl apply -n default -f config/samples/s3_reader.yaml",
    "kubectl wait -n default --for=condition=Ready pib/s3-reader --timeout=3m",
    "kubectl get pib -n default s3-reader",
    "kubectl run -n default aws-cli --rm -it --restart=Never --image=amazon/aws-cli \
     --overrides='{\"spec\":{\"serviceAccountName\":\"s3-reader\"}}' -- sts get-caller-identity",
    "kubectl apply -k config/default",
    // docs/testing.md: the end-to-end suite against a kind cluster.
    "kind create cluster --name pio",
    "kind get kubeconfig --name pio > /tmp/pio.kubeconfig",
    "GATEWAY_PORT=4566 MINISTACK_ACCOUNT_ID=111122223333 .venv/bin/ministack &",
    "aws --endpoint-url http://127.0.0.1:4566 eks create-cluster --name e2e \
     --role-arn arn:aws:iam::111122223333:role/eks --resources-vpc-config '{}'",
    "kubectl --kubeconfig /tmp/pio.kubeconfig apply -f crds/",
    "cargo run --release -- run --cluster-name e2e --region us-east-1 \
     --aws-endpoint-url http://127.0.0.1:4566 --config tests/e2e-guardrails.yaml",
    "docker build -t pod-identity-operator:dev . && kind load docker-image \
     pod-identity-operator:dev --name pio",
    "E2E_KUBECONFIG=/tmp/pio.kubeconfig E2E_AWS_ENDPOINT=http://127.0.0.1:4566 \
     cargo test --test e2e",
    // docs/performance.md: the benchmark, minutes to an hour.
    "cargo bench --bench scale",
    "PIO_BENCH_SIZES=1000 PIO_BENCH_TARGETS=kubesim,apiserver \
     PIO_CONTROL_PLANE=target/control-plane/k8s-v1.36.3-etcd-v3.6.14 cargo bench --bench scale",
    "scripts/scale-table",
    // docs/monitoring.md: on the cluster the operator runs in.
    "kubectl apply -k config/monitoring",
    "aws iam list-attached-role-policies --role-name <operator role>",
    "aws iam list-role-policies --role-name <operator role>",
    "kubectl -n pod-identity-system logs -l app.kubernetes.io/name=pod-identity-operator \
     --prefix | grep 'reconcile failed'",
    "kubectl -n pod-identity-system get deploy,pods -l app.kubernetes.io/name=pod-identity-operator",
    "kubectl -n pod-identity-system get lease pod-identity-operator -o yaml",
    "kubectl -n pod-identity-system logs deploy/pod-identity-operator",
];

// ---------------------------------------------------------------------------------------
// Reading the docs

/// README.md and every page of docs/, as paths relative to the repository.
fn documents() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".into());
    docs
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// What the comment before a block says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    RunBy(String),
    NotRun(String),
    Missing,
}

#[derive(Debug)]
struct Block {
    doc: String,
    /// 1-based line of the opening fence.
    line: usize,
    marker: Marker,
    text: String,
}

impl Block {
    fn commands(&self) -> Vec<String> {
        commands(&self.text)
    }

    fn first(&self) -> String {
        self.commands().into_iter().next().unwrap_or_default()
    }
}

/// The fenced shell blocks of one document.
fn shell_blocks(doc: &str) -> Vec<Block> {
    let text = read(doc);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let lang = info.trim();
        let start = i;
        i += 1;
        let body_start = i;
        while i < lines.len() && !lines[i].starts_with("```") {
            i += 1;
        }
        let body = lines[body_start..i.min(lines.len())].join("\n");
        i += 1;
        if !matches!(lang, "sh" | "bash" | "shell" | "console") {
            continue;
        }
        let before = lines[..start].iter().rev().find(|l| !l.trim().is_empty());
        out.push(Block {
            doc: doc.to_owned(),
            line: start + 1,
            marker: before.map_or(Marker::Missing, |l| marker(l)),
            text: body,
        });
    }
    out
}

fn marker(line: &str) -> Marker {
    let Some(inner) = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|l| l.strip_suffix("-->"))
    else {
        return Marker::Missing;
    };
    let inner = inner.trim();
    if let Some(file) = inner.strip_prefix("run by:") {
        Marker::RunBy(file.trim().to_owned())
    } else if let Some(why) = inner.strip_prefix("not run:") {
        Marker::NotRun(why.trim().to_owned())
    } else {
        Marker::Missing
    }
}

/// Whitespace runs (line continuations included) as one space.
fn normalize(text: &str) -> String {
    text.replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `line` without a trailing `# comment` (a `#` after a blank, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The heredoc terminator a command opens (`<<EOF`, `<<'EOF'`, `<<-JSON`), if any.
fn heredoc(command: &str) -> Option<String> {
    let at = command.find("<<")?;
    let word: String = command[at + 2..]
        .trim_start_matches('-')
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The commands of a shell block, each normalized: comments and blank lines dropped,
/// continuation lines joined, a heredoc's body taken as data of its command.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        let mut command = strip_comment(line).trim_end().to_owned();
        if command.trim().is_empty() {
            continue;
        }
        while command.ends_with('\\') {
            command.pop();
            match lines.next() {
                Some(next) => {
                    command.push(' ');
                    command.push_str(strip_comment(next).trim_end());
                }
                None => break,
            }
        }
        if let Some(end) = heredoc(&command) {
            for body in lines.by_ref() {
                if body.trim() == end {
                    break;
                }
            }
        }
        out.push(normalize(&command));
    }
    out
}

// ---------------------------------------------------------------------------------------
// The README's size and the links

#[test]
fn the_readme_stays_under_ten_kib() {
    let size = read("README.md").len();
    assert!(
        size < README_MAX_BYTES,
        "README.md has {size} bytes, {README_MAX_BYTES} at most: move detail into docs/"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, blanks as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if !in_code && level > 0 && line[level..].starts_with(' ') {
            out.insert(anchor(&line[level..]));
        }
    }
    out
}

/// The link targets of a Markdown text, outside code blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans hold no links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].trim().to_owned()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_points_at_a_file_and_heading_that_exist() {
    let mut problems = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        let dir = Path::new(&doc).parent().unwrap_or(Path::new(""));
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                PathBuf::from(ROOT).join(&doc)
            } else {
                PathBuf::from(ROOT).join(dir).join(path)
            };
            if !file.exists() {
                problems.push(format!("{doc}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(fragment) = fragment {
                let is_markdown = file.extension().is_some_and(|e| e == "md");
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                if is_markdown && !anchors(&text).contains(fragment) {
                    problems.push(format!("{doc}:{line}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The repository paths a Markdown text names (`src/...`, `tests/...`, `config/...`),
/// in prose, code spans and blocks alike, cut at the first character no path of the
/// repository holds (so `presets/<name>.yaml` names `presets/`).
fn repository_paths(text: &str) -> Vec<(usize, String)> {
    const TOP: &str = "src/ tests/ config/ scripts/ crates/ charts/ examples/ crds/ benches/ \
                       docs/ presets/";
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.char_indices() {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "/.-_$".contains(c))
                || !TOP.split(' ').any(|t| line[at..].starts_with(t))
            {
                continue;
            }
            let path: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            out.push((n + 1, path.trim_end_matches(['.', ',']).to_owned()));
        }
    }
    out
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let mut problems = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for (line, path) in repository_paths(&text) {
            // The presets table names files of the add-ons' own repositories.
            let row = text.lines().nth(line - 1).unwrap_or_default();
            if doc == "docs/presets.md" && row.starts_with("| `") {
                continue;
            }
            if !Path::new(ROOT).join(&path).exists() {
                problems.push(format!("{doc}:{line}: {path}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "paths the docs name that do not exist:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Every command is run

/// `text` as a file holding commands is compared: continuations joined, whitespace
/// normalized, and once more with string escapes undone.
fn holds(file_text: &str, command: &str) -> bool {
    let plain = normalize(file_text);
    plain.contains(command)
        || plain
            .replace("\\\"", "\"")
            .replace("\\\\", "\\")
            .contains(command)
}

#[test]
fn every_shell_command_is_run_by_a_test_or_by_ci() {
    let mut problems = Vec::new();
    let not_run: Vec<String> = NOT_RUN.iter().map(|c| normalize(c)).collect();
    let mut not_run_seen = BTreeSet::new();
    let mut here_seen = BTreeSet::new();
    let mut delegated = 0;
    for doc in documents() {
        for block in shell_blocks(&doc) {
            let at = format!("{}:{}", block.doc, block.line);
            let commands = block.commands();
            if commands.is_empty() {
                problems.push(format!("{at}: a shell block without a command"));
            }
            match &block.marker {
                Marker::Missing => problems.push(format!(
                    "{at}: say what runs this block: `<!-- run by: tests/docs.rs -->` with a \
                     session in tests/docs.rs, `<!-- run by: FILE -->` naming the test or \
                     script that runs it, or `<!-- not run: WHY -->` with its commands in \
                     NOT_RUN"
                )),
                Marker::RunBy(file) if file == HERE => {
                    let first = block.first();
                    let sessions: Vec<&str> = SESSIONS
                        .iter()
                        .filter(|s| {
                            s.blocks
                                .iter()
                                .any(|(d, f)| *d == block.doc && first.starts_with(&normalize(f)))
                        })
                        .map(|s| s.name)
                        .collect();
                    if sessions.len() != 1 {
                        problems.push(format!(
                            "{at}: marked as run here, but {} sessions of tests/docs.rs run \
                             a block of {} starting {first:?}",
                            sessions.len(),
                            block.doc
                        ));
                    }
                    here_seen.insert((block.doc.clone(), first));
                }
                Marker::RunBy(file) => {
                    let Ok(text) = std::fs::read_to_string(Path::new(ROOT).join(file)) else {
                        problems.push(format!("{at}: run by {file}, which does not exist"));
                        continue;
                    };
                    for c in &commands {
                        if !holds(&text, c) {
                            problems.push(format!("{at}: {file} does not run {c:?}"));
                        }
                    }
                    delegated += commands.len();
                }
                Marker::NotRun(why) => {
                    if why.is_empty() {
                        problems.push(format!("{at}: `not run:` without the reason"));
                    }
                    for c in &commands {
                        if not_run.contains(c) {
                            not_run_seen.insert(c.clone());
                        } else {
                            problems.push(format!(
                                "{at}: {c:?} is run by nothing: run it in a session of \
                                 tests/docs.rs or a test, or, if no test machine can, add it \
                                 to NOT_RUN"
                            ));
                        }
                    }
                }
            }
        }
    }
    for c in &not_run {
        if !not_run_seen.contains(c) {
            problems.push(format!(
                "NOT_RUN lists {c:?}, which no `not run` block holds"
            ));
        }
    }
    for s in SESSIONS {
        for (doc, first) in s.blocks {
            let first = normalize(first);
            if !here_seen
                .iter()
                .any(|(d, f)| d == doc && f.starts_with(&first))
            {
                problems.push(format!(
                    "session {}: no block of {doc} marked as run here starts {first:?}",
                    s.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "commands: {} in sessions here, {delegated} run by the files named, {} not run",
        here_commands(),
        not_run.len()
    );
}

/// How many commands the sessions run.
fn here_commands() -> usize {
    SESSIONS
        .iter()
        .flat_map(|s| s.blocks.iter())
        .map(|(doc, first)| find_block(doc, first).commands().len())
        .sum()
}

#[test]
fn the_block_reader_keeps_commands_and_drops_comments_and_heredoc_bodies() {
    let text = "# a comment\nexport A=1   # set\n\nkubectl apply -f x \\\n  -n y   # more\n\
                cat > v.yaml <<EOF\nrules: # not a command\nEOF\necho \"a # b\" done\n";
    assert_eq!(
        commands(text),
        [
            "export A=1",
            "kubectl apply -f x -n y",
            "cat > v.yaml <<EOF",
            "echo \"a # b\" done",
        ]
    );
    assert!(holds(
        "run(\"kubectl apply \\\n   -f x\")",
        "kubectl apply -f x"
    ));
    assert_eq!(
        marker("<!-- run by: scripts/test -->"),
        Marker::RunBy("scripts/test".into())
    );
    assert_eq!(
        marker("<!-- not run: no AWS -->"),
        Marker::NotRun("no AWS".into())
    );
    assert_eq!(marker("Some prose."), Marker::Missing);
    assert_eq!(
        anchor(" The `audit` walk, in the sandbox"),
        "the-audit-walk-in-the-sandbox"
    );
}

// ---------------------------------------------------------------------------------------
// Running the sessions

fn find_block(doc: &str, first: &str) -> Block {
    let first = normalize(first);
    let mut found: Vec<Block> = shell_blocks(doc)
        .into_iter()
        .filter(|b| b.first().starts_with(&first))
        .collect();
    assert_eq!(found.len(), 1, "{doc}: one shell block starting {first:?}");
    found.remove(0)
}

/// The docs' way of naming the binary, replaced by the binary on PATH.
fn as_run_here(text: &str, port: Option<u16>) -> String {
    let text = text
        .replace("cargo run --release -- ", "pod-identity-operator ")
        .replace("cargo run -- ", "pod-identity-operator ");
    match port {
        Some(p) => text.replace("127.0.0.1:PORT", &format!("127.0.0.1:{p}")),
        None => text,
    }
}

/// A scratch folder laid out as the repository for the docs' relative paths, with the
/// binary on PATH.
struct Scratch {
    dir: tempfile::TempDir,
    path: String,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("scratch folder");
        for sub in ["examples", "crds", "config"] {
            std::os::unix::fs::symlink(Path::new(ROOT).join(sub), dir.path().join(sub))
                .expect("link into the repository");
        }
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin folder");
        std::os::unix::fs::symlink(BIN, bin.join("pod-identity-operator")).expect("link binary");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
        );
        Scratch { dir, path }
    }

    /// A command with the scratch folder as its directory and home, and nothing of the
    /// caller's Kubernetes or AWS settings.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.dir.path())
            .env("LANG", "C.UTF-8")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }
}

/// A server process, its output collected as it comes; killed when dropped.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    fn start(scratch: &Scratch, command: &str) -> Running {
        let line = as_run_here(strip_comment(command), None);
        let mut words = line.split_whitespace();
        let program = words.next().expect("a server command");
        let mut child = scratch
            .command("bash")
            .arg("-c")
            .arg(format!(
                "exec {program} {}",
                words.collect::<Vec<_>>().join(" ")
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = sink.lock().expect("output");
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        Running { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.output().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "the server never printed {text:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port of the URL on the printed line starting with `label`.
    fn port(&self, label: &str) -> u16 {
        let output = self.output();
        let line = output
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no line {label:?}:\n{output}"));
        let url = line[label.len()..].trim();
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        authority
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a session's blocks as the docs give them, in one shell, and returns its output.
fn run_session(name: &str) -> String {
    let session = SESSIONS
        .iter()
        .find(|s| s.name == name)
        .expect("a session of that name");
    let scratch = Scratch::new();
    let mut server = None;
    let mut port = None;
    let mut script = String::from("set -euo pipefail\n");
    for (i, (doc, first)) in session.blocks.iter().enumerate() {
        let block = find_block(doc, first);
        let mut text = block.text.clone();
        if i == 0
            && let Some(s) = &session.server
        {
            let opening = text.lines().next().unwrap_or_default().to_owned();
            assert_eq!(
                normalize(strip_comment(&opening)),
                normalize(s.command),
                "{doc}: the block starts its server as the session does"
            );
            let mut running = Running::start(&scratch, s.command);
            running.wait_for(s.ready);
            port = s.port_from.map(|label| running.port(label));
            server = Some(running);
            text = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        }
        script.push_str(&format!("# {doc}:{}\n", block.line));
        script.push_str(&as_run_here(&text, port));
        script.push('\n');
    }
    let mut child = scratch
        .command("bash")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("the shell's state").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("the shell's output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let server_output = server.as_ref().map(Running::output).unwrap_or_default();
    assert!(
        out.status.success(),
        "session {name} failed ({}):\n--- script\n{script}\n--- output\n{text}\n--- server\n{server_output}",
        out.status
    );
    for shown in session.shows {
        assert!(
            text.contains(shown),
            "session {name}: the docs say {shown:?} shows:\n{text}"
        );
    }
    text
}

#[test]
fn the_local_commands_run() {
    run_session("local");
}

#[test]
fn the_sandbox_runs_the_readme_and_the_walks_of_the_docs() {
    run_session("sandbox");
}

#[test]
fn kubesim_serves_kubectl_as_the_testing_page_says() {
    run_session("kubesim");
}
