//! The Dockerfile: a Rust build stage and a distroless, non-root runtime stage.

use crate::files::{find, kustomize, read};

#[test]
fn dockerfile_builds_in_a_rust_stage_and_runs_distroless_nonroot() {
    let text = read("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:${RUST_VERSION}") && froms[0].ends_with(" AS builder"));
    assert!(
        froms[1].starts_with("FROM gcr.io/distroless/") && froms[1].ends_with(":nonroot"),
        "{}",
        froms[1]
    );
    let cargo = read("Cargo.toml");
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    assert!(
        text.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
        "the builder uses the crate's rust-version {rust_version}"
    );
    let final_stage = &text[text.find(froms[1]).expect("final stage")..];
    assert!(final_stage.contains("ARG VERSION"));
    assert!(final_stage.contains("org.opencontainers.image.version=\"${VERSION}\""));
    assert!(final_stage.contains("USER 65532:65532"));
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/pod-identity-operator\"]"));
    // The production binary leaves out kubesim, the AWS simulator and `sandbox`.
    assert!(text.contains(
        "cargo build --release --locked --no-default-features --bin pod-identity-operator"
    ));
    // The Deployment runs as the image's user.
    let objs = kustomize("manager");
    assert_eq!(
        find(&objs, "Deployment", "pod-identity-operator")["spec"]["template"]["spec"]["securityContext"]
            ["runAsUser"],
        65532
    );

    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.first(), Some(&"*"), "everything is excluded first");
    // crates/ holds the library and the AWS layer; benches/ holds targets Cargo.toml
    // names.
    for copied in ["Cargo.toml", "Cargo.lock", "src", "crates", "benches"] {
        assert!(text.contains(&format!("COPY {copied}")) || text.contains(&format!(" {copied} ")));
        assert!(
            lines
                .iter()
                .any(|l| l.trim_end_matches('/') == format!("!{copied}")),
            ".dockerignore lets {copied} in"
        );
    }
}
