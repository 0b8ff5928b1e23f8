//! The README and `docs/`: the README stays under 10 KiB, every relative link points at a
//! file (and heading) that exists, every repository path they name exists, and every
//! shell command is run by a test or by CI.
//!
//! Each fenced `sh`/`bash` block of `README.md` and `docs/*.md` is preceded by a comment
//! saying what runs it:
//!
//! - `<!-- run by: tests/docs/ -->`: one of the [`SESSIONS`] below runs the block as
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

mod markdown;
mod run;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use markdown::{
    Marker, anchor, anchors, commands, documents, find_block, holds, links, marker, normalize,
    read, repository_paths, shell_blocks,
};
use run::run_session;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const BIN: &str = env!("CARGO_BIN_EXE_pod-identity-operator");

/// What this file runs, in the marker of a block it runs.
const HERE: &str = "tests/docs/";

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
// The README's size, the links and the paths

#[test]
fn the_flags_table_of_operating_lists_every_flag_of_run() {
    let help = std::process::Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .expect("the binary runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let table: String = read("docs/operating.md")
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .collect();
    let missing: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && *w != "--help")
        .map(|w| w.trim_end_matches(','))
        .filter(|flag| !table.contains(&format!("`{flag}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operating.md's flags table lacks {missing:?}"
    );
}

#[test]
fn the_readme_stays_under_ten_kib() {
    let size = read("README.md").len();
    assert!(
        size < README_MAX_BYTES,
        "README.md has {size} bytes, {README_MAX_BYTES} at most: move detail into docs/"
    );
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
                    "{at}: say what runs this block: `<!-- run by: tests/docs/ -->` with a \
                     session in tests/docs/main.rs, `<!-- run by: FILE -->` naming the test or \
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
                            "{at}: marked as run here, but {} sessions of tests/docs/main.rs run \
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
                                 tests/docs/main.rs or a test, or, if no test machine can, add it \
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
// The sessions

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
