//! Running a session: a scratch folder laid out as the repository, the binary on PATH,
//! the session's server started as its first block starts it, and the blocks in one
//! shell.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::markdown::{find_block, normalize, strip_comment};
use crate::{BIN, ROOT, SESSIONS, WAIT};

/// The docs' way of naming the binary, replaced by the binary on PATH.
pub fn as_run_here(text: &str, port: Option<u16>) -> String {
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
pub struct Scratch {
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
pub struct Running {
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
pub fn run_session(name: &str) -> String {
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
