//! Running a provisioning command (`apt-get`, `pip`, `dpkg-deb`, `--version`) with a time
//! bound: a network that hangs fails the set-up with a message instead of stalling a test run
//! until CI's own limit.

use std::io::{self, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The output of `command` (stdin closed, stdout and stderr captured), or `TimedOut` once it
/// has run longer than `limit` (it is killed then).
pub(crate) fn run(command: &mut Command, limit: Duration) -> io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Each pipe is read on a thread of its own, which hands its bytes over a channel: a
    // grandchild still holding a pipe open (a `pip` or `apt` helper) cannot keep us waiting.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        let (sent, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            let _ = sent.send(bytes);
        });
        received
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("still running after {} s: stopped", limit.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // What the pipes held by the time the command ended (at most a second more for their
    // last bytes).
    let last = |r: std::sync::mpsc::Receiver<Vec<u8>>| {
        r.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: last(stdout),
        stderr: last(stderr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured_and_a_hang_is_cut_off() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .expect("sh");
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let started = Instant::now();
        let hung = run(Command::new("sleep").arg("30"), Duration::from_millis(300));
        assert_eq!(hung.expect_err("cut off").kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        // A grandchild keeping the pipes open does not hold up a command that has ended.
        let started = Instant::now();
        let out = run(
            Command::new("sh").args(["-c", "sleep 30 & echo done"]),
            Duration::from_secs(20),
        )
        .expect("sh");
        assert!(out.status.success());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
