//! Running a command (`apt-get`, `pip`, `dpkg-deb`, `--version`, a validator a test runs) with
//! a time bound: a network or a tool that hangs fails the set-up or the test with a message
//! instead of stalling a run until CI's own limit.

use std::io::{self, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The output of `command` (stdin closed, stdout and stderr captured), or `TimedOut` once it
/// has run longer than `limit` (it is killed then).
pub fn run(command: &mut Command, limit: Duration) -> io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Each pipe is read on a thread of its own, which hands its bytes over a channel as they
    // come: a grandchild still holding a pipe open (a `pip` or `apt` helper) cannot keep us
    // waiting, nor hide what the command printed.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        let (sent, received) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let Some(mut p) = pipe else { return };
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = p.read(&mut buf) {
                if sent.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
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
    // What the pipes held by the time the command ended, and what comes within a second more
    // (their last bytes; a pipe a grandchild keeps open never ends).
    let until = Instant::now() + Duration::from_secs(1);
    let last = |r: std::sync::mpsc::Receiver<Vec<u8>>| {
        let mut bytes = Vec::new();
        while let Ok(chunk) = r.recv_timeout(until.saturating_duration_since(Instant::now())) {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    };
    Ok(Output {
        status,
        stdout: last(stdout),
        stderr: last(stderr),
    })
}

/// [`run`] with the bound every provisioning command gets: ten minutes (a `pip` download
/// on a slow index, `apt-get update` on a slow mirror).
pub fn provision(command: &mut Command) -> io::Result<Output> {
    run(command, Duration::from_secs(600))
}

/// A command's stdout then stderr, trimmed, as text: its last 4 000 bytes, where `pip`,
/// `apt-get` and `dpkg-deb` say what went wrong.
pub fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    tail(text.trim(), 4000).to_owned()
}

/// The last `max` bytes of `text` (on a character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[start..]
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
        assert_eq!(out.stdout, b"done\n", "what it printed is kept");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
