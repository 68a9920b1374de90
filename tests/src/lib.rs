//! Helpers for the end-to-end tests: run the real `shouhu` binary with its own data directory
//! and free ports, read where it listens from its JSON log, stop it with SIGTERM.

#![forbid(unsafe_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the `shouhu` binary built next to this test executable (`make test` builds it first;
/// `SHOUHU_BIN` overrides).
pub fn shouhu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SHOUHU_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("shouhu");
    assert!(bin.exists(), "{} does not exist: build it first (`cargo build -p shouhu-api --bin shouhu`, as `make test` does)", bin.display());
    bin
}

/// A `shouhu` command with a clean environment for the given data directory.
pub fn shouhu(data_dir: &Path) -> Command {
    let mut c = Command::new(shouhu_bin());
    c.env("SHOUHU__SERVER__DATA_DIR", data_dir)
        .env("SHOUHU__HTTP__LISTEN", "127.0.0.1:0")
        .env("SHOUHU__METRICS__LISTEN", "127.0.0.1:0")
        .env("SHOUHU__JT808__LISTEN", "127.0.0.1:0")
        .env("SHOUHU__SIP__LISTEN", "127.0.0.1:0")
        .env("SHOUHU__AUTH__ARGON2_MEMORY_KIB", "1024")
        .env("SHOUHU__AUTH__ARGON2_ITERATIONS", "1")
        .env("SHOUHU_LOG_FORMAT", "json")
        .env("SHOUHU_LOG", "info");
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOUHU__DATABASE") {
            c.env_remove(k);
        }
    }
    c
}

/// Run a command to completion; panics with its output if it fails.
pub fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("spawn shouhu");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        c,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running server.
pub struct Running {
    /// The process.
    pub child: Child,
    /// `http(s)://127.0.0.1:PORT`.
    pub base: String,
    /// Metrics address `127.0.0.1:PORT`.
    pub metrics: Option<String>,
    /// JT/T 808 listener `127.0.0.1:PORT`, when it runs.
    pub jt808: Option<String>,
    /// SIP (UDP and TCP) `127.0.0.1:PORT`, when it runs.
    pub sip: Option<String>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Start `shouhu serve` (or another server subcommand) and wait until it listens.
    pub fn start(mut c: Command, scheme: &str) -> Running {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn shouhu");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let mut base = None;
        let mut jt808 = None;
        let mut sip = None;
        while base.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!("shouhu did not start listening; log:\n{}", seen.join("\n")),
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(j) = v["jt808"].as_str() {
                    jt808 = Some(j.to_string());
                }
                if v["message"].as_str() == Some("SIP listening") {
                    sip = v["udp"].as_str().map(str::to_string);
                }
                if v["message"]
                    .as_str()
                    .is_some_and(|m| m == "HTTP listening" || m == "HTTPS listening")
                {
                    base = Some(format!(
                        "{scheme}://{}",
                        v["listen"].as_str().expect("listen field")
                    ));
                }
            }
            seen.push(line);
        }
        Running {
            child,
            base: base.unwrap(),
            metrics: None,
            jt808,
            sip,
            lines: rx,
        }
    }

    /// Send SIGTERM and wait for the exit status, with the log lines printed since start.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                let lines: Vec<String> = self.lines.try_iter().collect();
                return (st, lines);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("shouhu did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
