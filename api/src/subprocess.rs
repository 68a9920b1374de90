//! Helper programs run on request paths (ffmpeg for the AAC audio of HLS segments, gst-launch
//! for snapshots), bounded: at most `media.max_subprocesses` at once across the node (a request
//! waits `media.subprocess_queue_secs` for a slot, then is answered `503 busy`), and each one
//! killed when it runs longer than `media.subprocess_timeout_secs` (`504`) or when its request
//! goes away (`kill_on_drop`).

use std::process::{Output, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Why a helper program gave no output.
#[derive(Debug, thiserror::Error)]
pub enum SubprocessError {
    /// Every slot stayed taken while the request waited.
    #[error("too many {0} jobs are running; try again shortly")]
    Busy(&'static str),
    /// It ran past the limit and was killed.
    #[error("{0} took longer than {1:?} and was stopped")]
    TimedOut(&'static str, Duration),
    /// It could not be started or waited for.
    #[error("{0} could not run: {1}")]
    Io(&'static str, std::io::Error),
}

impl From<SubprocessError> for ApiError {
    fn from(e: SubprocessError) -> Self {
        match e {
            SubprocessError::Busy(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            }
            SubprocessError::TimedOut(..) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timed_out", e.to_string())
            }
            SubprocessError::Io(..) => ApiError::internal(e.to_string()),
        }
    }
}

/// The node's slots for helper programs.
#[derive(Debug)]
pub struct Subprocesses {
    slots: Semaphore,
    queue: Duration,
    timeout: Duration,
}

impl Subprocesses {
    /// `max` at once; a request waits `queue` for a slot; each run is stopped after `timeout`.
    pub fn new(max: usize, queue: Duration, timeout: Duration) -> Self {
        Subprocesses {
            slots: Semaphore::new(max.max(1)),
            queue,
            timeout,
        }
    }

    /// Run `cmd` (`what` names it in errors) with `input` on its standard input; its output,
    /// whatever its exit status.
    pub async fn run(
        &self,
        what: &'static str,
        mut cmd: Command,
        input: Vec<u8>,
    ) -> Result<Output, SubprocessError> {
        let _slot = tokio::time::timeout(self.queue, self.slots.acquire())
            .await
            .map_err(|_| SubprocessError::Busy(what))?
            .map_err(|_| SubprocessError::Busy(what))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SubprocessError::Io(what, e))?;
        let stdin = child.stdin.take();
        let feed = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input).await;
            }
        });
        // On the timeout the future owning the child is dropped, which kills it.
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| SubprocessError::TimedOut(what, self.timeout))?
            .map_err(|e| SubprocessError::Io(what, e));
        feed.abort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether process `pid` still exists (and is not a zombie).
    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    /// Wait (at most 10 s) until `pid` is gone.
    async fn gone(pid: u32) -> bool {
        for _ in 0..500 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_program_that_hangs_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let p = Subprocesses::new(1, Duration::from_secs(1), Duration::from_millis(300));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("echo $$ > '{}'; exec sleep 60", pid_file.display()));
        let r = p.run("sleep", cmd, Vec::new()).await;
        assert!(
            matches!(r, Err(SubprocessError::TimedOut("sleep", _))),
            "{r:?}"
        );
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid).await, "process {pid} outlived its timeout");
        let e: ApiError = SubprocessError::TimedOut("sleep", Duration::from_millis(300)).into();
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test]
    async fn slots_are_bounded_and_a_waiting_request_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("release");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let p = std::sync::Arc::new(Subprocesses::new(
            1,
            Duration::from_millis(200),
            Duration::from_secs(20),
        ));
        let held = p.clone();
        let f = fifo.clone();
        // Holds the only slot until the test writes to the FIFO.
        let first = tokio::spawn(async move {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(format!("read x < '{}'", f.display()));
            held.run("wait", cmd, Vec::new()).await
        });
        while p.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let r = p.run("echo", Command::new("true"), Vec::new()).await;
        assert!(matches!(r, Err(SubprocessError::Busy("echo"))), "{r:?}");
        let e: ApiError = SubprocessError::Busy("echo").into();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        tokio::task::spawn_blocking(move || std::fs::write(fifo, b"go\n"))
            .await
            .unwrap()
            .unwrap();
        let out = first.await.unwrap().unwrap();
        assert!(out.status.success());
        // The slot is free again.
        let r = p
            .run("true", Command::new("true"), Vec::new())
            .await
            .unwrap();
        assert!(r.status.success());
    }

    #[tokio::test]
    async fn output_and_input_pass_through() {
        let p = Subprocesses::new(2, Duration::from_secs(1), Duration::from_secs(10));
        let out = p
            .run("cat", Command::new("cat"), b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hello");
    }
}
