//! `scripts/test-cluster up|down`: a real control plane (etcd, kube-apiserver,
//! kube-controller-manager) on 127.0.0.1 for trying the operator by hand. `up` starts it
//! in a folder, leaves it running and prints the admin kubeconfig's path; `down` stops
//! the processes `up` started and removes the folder.

#[path = "../tests/support/cluster.rs"]
mod cluster;

use std::path::PathBuf;

use anyhow::{Context, bail};
use cluster::{Binaries, ControlPlane, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, dir) = match args.as_slice() {
        [c] => (c.as_str(), PathBuf::from("target/test-cluster")),
        [c, d] => (c.as_str(), PathBuf::from(d)),
        _ => bail!("usage: test-cluster up|down [FOLDER] (default target/test-cluster)"),
    };
    let dir = std::path::absolute(&dir).context("folder path")?;
    let pids = dir.join("pids");
    match command {
        "up" => {
            if pids.exists() {
                bail!(
                    "{} holds a running control plane: `scripts/test-cluster down` first",
                    dir.display()
                );
            }
            let binaries = Binaries::locate().map_err(anyhow::Error::msg)?;
            let plane = ControlPlane::start_in(binaries, dir.clone(), true, Options::default())
                .await
                .map_err(anyhow::Error::msg)?;
            let operator = plane
                .kubeconfig_for("operator", cluster::OPERATOR_USER, None)
                .map_err(anyhow::Error::msg)?;
            let admin = plane.kubeconfig().to_owned();
            let url = plane.url();
            let running = plane.detach();
            let lines: Vec<String> = running
                .iter()
                .map(|(name, pid)| format!("{pid} {name}"))
                .collect();
            std::fs::write(&pids, lines.join("\n") + "\n").context("write pids")?;
            eprintln!(
                "kube-apiserver at {url}; logs and certificates in {}",
                dir.display()
            );
            eprintln!(
                "the operator's own identity (bound by config/rbac/): {}",
                operator.display()
            );
            eprintln!("stop it with: scripts/test-cluster down");
            println!("{}", admin.display());
        }
        "down" => {
            let Ok(text) = std::fs::read_to_string(&pids) else {
                eprintln!("no control plane runs from {}", dir.display());
                return Ok(());
            };
            for line in text.lines() {
                if let Some((pid, name)) = line.split_once(' ') {
                    let status = std::process::Command::new("kill")
                        .args(["-9", pid])
                        .status()
                        .context("kill")?;
                    if !status.success() {
                        eprintln!("{name} ({pid}) was not running");
                    }
                }
            }
            std::fs::remove_dir_all(&dir).context("remove the folder")?;
            eprintln!("stopped; {} removed", dir.display());
        }
        other => bail!("unknown command {other}: use up or down"),
    }
    Ok(())
}
