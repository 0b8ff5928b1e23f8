//! The command line as clap parses it: `run` the default subcommand, every `run` flag
//! also an environment variable, each subcommand's flags and defaults, and what the
//! commands of a build without the `sandbox` feature answer. A test binary of its own,
//! since the tests set `PIO_*` variables of the process.

use pod_identity_operator::aws::ratelimit::Rate;
use pod_identity_operator::cli::iam_policy::IamPolicyArgs;
use pod_identity_operator::cli::local::KubesimArgs;
use pod_identity_operator::cli::{Cli, Command};
use pod_identity_operator::operator_policy;
use std::sync::Mutex;

/// Held by the tests that set `PIO_*` variables or depend on their absence, since
/// clap reads them from the process environment.
static ENV: Mutex<()> = Mutex::new(());

/// Runs `f` with these variables set, restoring their previous values afterwards.
fn with_env(vars: &[(&str, &str)], f: impl FnOnce()) {
    let _guard = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let saved: Vec<_> = vars
        .iter()
        .map(|(k, _)| (*k, std::env::var_os(k)))
        .collect();
    for (k, v) in vars {
        // SAFETY: every test touching these variables holds ENV, and no other thread
        // of the test binary reads them.
        unsafe { std::env::set_var(k, v) };
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for (k, old) in saved {
        // SAFETY: as above.
        unsafe {
            match old {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_with_default(
        std::iter::once("pod-identity-operator").chain(args.iter().copied()),
    )
}

/// What `iam-policy` prints for these arguments.
fn iam_policy(args: &IamPolicyArgs) -> pod_identity_operator::Result<String> {
    operator_policy::command(&args.installation(), args.document, args.config.as_deref())
}

#[test]
fn iam_policy_renders_the_installations_documents() {
    let base = [
        "iam-policy",
        "--cluster-name",
        "prod",
        "--account",
        "111122223333",
        "--region",
        "eu-west-1",
    ];
    let args = |extra: &[&str]| {
        let all: Vec<&str> = base.iter().chain(extra).copied().collect();
        match parse(&all).expect("iam-policy parses").command {
            Command::IamPolicy(a) => a,
            other => panic!("{other:?}"),
        }
    };
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/guardrails.example.yaml"
    );
    let text = iam_policy(&args(&[
        "--config",
        config,
        "--operator-role-arn",
        "arn:aws:iam::111122223333:role/pio",
    ]))
    .expect("rendered");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(text.contains("arn:aws:iam::111122223333:role/pod-identity/prod/*"));
    assert!(text.contains("arn:aws:eks:eu-west-1:111122223333:cluster/prod"));
    assert!(text.contains("\"arn:aws:iam::111122223333:role/pio\""));
    assert_eq!(doc["Version"], "2012-10-17");
    let missing = iam_policy(&args(&[])).expect_err("permissions need the guardrails");
    assert!(missing.to_string().contains("--config"), "{missing}");
    let trust = iam_policy(&args(&["--document", "trust", "--namespace", "ops"]))
        .expect("trust needs no guardrails");
    assert!(
        trust.contains("\"aws:RequestTag/kubernetes-namespace\": \"ops\""),
        "{trust}"
    );
}

#[test]
fn run_flag_variables_fill_run_only() {
    with_env(
        &[("PIO_CONCURRENCY", "8"), ("PIO_LEADER_ELECT", "true")],
        || {
            for args in [
                &["run", "--cluster-name", "X"][..],
                &["--cluster-name", "X"],
            ] {
                let Command::Run(run) = parse(args).expect("run from flags and env").command else {
                    panic!("run expected for {args:?}");
                };
                assert_eq!((run.cluster_name.as_str(), run.concurrency), ("X", 8));
                assert!(run.leader_elect);
            }
            assert!(matches!(
                parse(&["crd"]).expect("crd").command,
                Command::Crd
            ));
            let Command::Sandbox(s) = parse(&["sandbox", "--quiet"]).expect("sandbox").command
            else {
                panic!("sandbox expected");
            };
            assert!(s.quiet);
            assert!(matches!(
                parse(&["kubesim", "--port", "0"]).expect("kubesim").command,
                Command::Kubesim(KubesimArgs { port: 0, .. })
            ));
            let err = parse(&["run"]).expect_err("no cluster name");
            assert!(err.to_string().contains("--cluster-name"), "{err}");
        },
    );
    with_env(
        &[("PIO_CLUSTER_NAME", "Y"), ("PIO_CONCURRENCY", "3")],
        || {
            for args in [
                &["run"][..],
                &[],
                &["--namespace", "a"],
                &["run", "--cluster-name", "Z"],
            ] {
                let Command::Run(run) = parse(args).expect("run from env").command else {
                    panic!("run expected for {args:?}");
                };
                let want = if args.contains(&"Z") { "Z" } else { "Y" };
                assert_eq!((run.cluster_name.as_str(), run.concurrency), (want, 3));
            }
            assert!(matches!(
                parse(&["crd"]).expect("crd").command,
                Command::Crd
            ));
        },
    );
}

#[test]
fn help_and_version_are_not_taken_for_run() {
    use clap::error::ErrorKind;
    for (args, kind) in [
        (&["--help"][..], ErrorKind::DisplayHelp),
        (&["-h"], ErrorKind::DisplayHelp),
        (&["help"], ErrorKind::DisplayHelp),
        (&["--version"], ErrorKind::DisplayVersion),
        (&["-V"], ErrorKind::DisplayVersion),
        (&["run", "--help"], ErrorKind::DisplayHelp),
    ] {
        let err = parse(args).expect_err("help or version");
        assert_eq!(err.kind(), kind, "{args:?}");
    }
    let help = parse(&["--help"]).expect_err("help").to_string();
    assert!(help.contains("`run` is meant"), "{help}");
    // `sandbox` and `kubesim` are listed only in builds that have them.
    assert_eq!(
        help.contains("sandbox"),
        cfg!(feature = "sandbox"),
        "{help}"
    );
    let run_help = parse(&["run", "--help"]).expect_err("help").to_string();
    assert!(run_help.contains("--cluster-name") && run_help.contains("PIO_CONCURRENCY"));
}

#[test]
fn run_takes_every_flag_and_needs_a_cluster_name() {
    let cli = Cli::try_parse_with_default([
        "pod-identity-operator",
        "run",
        "--cluster-name",
        "prod",
        "--region",
        "eu-west-1",
        "--aws-endpoint-url",
        "http://127.0.0.1:4566",
        "--resync-interval",
        "60",
        "--concurrency",
        "8",
        "--namespace",
        "team-a",
        "--iam-rate",
        "2.5",
        "--iam-burst",
        "5",
        "--eks-rate",
        "0",
        "--eks-burst",
        "7",
    ])
    .expect("valid command line");
    let Command::Run(args) = cli.command else {
        panic!("run expected");
    };
    assert_eq!(args.cluster_name, "prod");
    assert_eq!(args.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        args.aws_endpoint_url.as_deref(),
        Some("http://127.0.0.1:4566")
    );
    assert_eq!((args.resync_interval, args.concurrency), (60, 8));
    assert_eq!(args.namespace.as_deref(), Some("team-a"));
    assert_eq!(
        (args.iam_rate, args.iam_burst, args.eks_rate, args.eks_burst),
        (2.5, 5, 0.0, 7)
    );
    assert_eq!(
        Rate::from_flags(args.iam_rate, args.iam_burst),
        Some(Rate {
            per_second: 2.5,
            burst: 5
        })
    );
    assert_eq!(Rate::from_flags(args.eks_rate, args.eks_burst), None);
    for bad in ["-1", "NaN", "inf", "fast"] {
        let err = Cli::try_parse_with_default([
            "pod-identity-operator",
            "--cluster-name",
            "prod",
            &format!("--iam-rate={bad}"),
        ])
        .expect_err("not a rate");
        assert!(err.to_string().contains("not a rate"), "{bad}: {err}");
    }

    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    {
        let err =
            Cli::try_parse_with_default(["pod-identity-operator", "run"]).expect_err("required");
        assert!(err.to_string().contains("--cluster-name"));
    }
}

#[test]
fn run_takes_the_deployment_s_runtime_flags() {
    let cli = Cli::try_parse_with_default([
        "pod-identity-operator",
        "run",
        "--cluster-name",
        "prod",
        "--leader-elect",
        "--leader-election-namespace",
        "ops",
        "--health-addr=0.0.0.0:8081",
        "--metrics-addr=0.0.0.0:8080",
        "--log-format=json",
        "--log-level",
        "debug",
        "--shutdown-timeout",
        "10",
    ])
    .expect("valid command line");
    let Command::Run(args) = cli.command else {
        panic!("run expected");
    };
    assert!(args.leader_elect);
    assert_eq!(args.leader_election_namespace.as_deref(), Some("ops"));
    assert_eq!(args.leader_election_name, "pod-identity-operator");
    assert_eq!((args.lease_duration, args.lease_grace), (15, 5));
    assert_eq!(args.health_addr.map(|a| a.port()), Some(8081));
    assert_eq!(args.metrics_addr.map(|a| a.port()), Some(8080));
    assert_eq!(
        args.log_format,
        Some(pod_identity_operator::runtime::telemetry::LogFormat::Json)
    );
    assert_eq!(args.log_level.as_deref(), Some("debug"));
    assert_eq!(args.shutdown_timeout, 10);
    assert!(
        Cli::try_parse_with_default([
            "pod-identity-operator",
            "--cluster-name",
            "p",
            "--log-format=xml"
        ])
        .is_err()
    );
}

#[test]
fn run_is_the_default_command() {
    let cli = Cli::try_parse_with_default(["pod-identity-operator", "--cluster-name", "prod"])
        .expect("valid command line");
    let Command::Run(run) = cli.command else {
        panic!("run expected");
    };
    assert_eq!(run.cluster_name, "prod");
    let cli = Cli::try_parse_with_default(["pod-identity-operator", "crd"]).expect("crd");
    assert!(matches!(cli.command, Command::Crd));
}

#[test]
fn sandbox_has_defaults_and_takes_its_flags() {
    let cli = Cli::try_parse_with_default(["pod-identity-operator", "sandbox"]).expect("sandbox");
    let Command::Sandbox(args) = cli.command else {
        panic!("sandbox expected");
    };
    assert_eq!(
        args.kubeconfig,
        std::path::PathBuf::from("./sandbox.kubeconfig")
    );
    assert_eq!(args.inventory_addr.to_string(), "127.0.0.1:0");
    assert!(!args.quiet && args.apply.is_none() && !args.wire);
    let cli = Cli::try_parse_with_default([
        "pod-identity-operator",
        "sandbox",
        "--kubeconfig",
        "/tmp/k",
        "--inventory-addr",
        "127.0.0.1:8099",
        "--apply",
        "examples/",
        "--quiet",
        "--wire",
    ])
    .expect("sandbox flags");
    let Command::Sandbox(args) = cli.command else {
        panic!("sandbox expected");
    };
    assert_eq!(args.inventory_addr.port(), 8099);
    assert_eq!(args.apply, Some(std::path::PathBuf::from("examples/")));
    assert!(args.quiet && args.wire);
}

#[cfg(not(feature = "sandbox"))]
#[test]
fn sandbox_and_kubesim_say_they_are_not_in_this_build() {
    for name in ["sandbox", "kubesim"] {
        let err = match parse(&[name]).expect(name).command {
            Command::Sandbox(args) => pod_identity_operator::runtime::local::sandbox(args),
            Command::Kubesim(args) => pod_identity_operator::runtime::local::kubesim(&args),
            other => panic!("{name}: {other:?}"),
        }
        .expect_err(name)
        .to_string();
        assert!(
            err.contains("not in this build")
                && err.contains("feature `sandbox`")
                && err.contains(&format!("cargo run --release -- {name}")),
            "{err}"
        );
    }
}

#[test]
fn every_run_flag_has_an_environment_variable() {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let run = cmd.find_subcommand("run").expect("run subcommand");
    for arg in run.get_arguments().filter(|a| a.get_long().is_some()) {
        let long = arg.get_long().unwrap_or_default();
        if long == "help" {
            continue;
        }
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(
            env,
            Some(format!("PIO_{}", long.to_uppercase().replace('-', "_"))),
            "--{long}"
        );
    }
}
