//! Running Envoy: `--mode validate`, and long-running proxies for the demo and
//! tests.

use std::error::Error;
use std::fmt;
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Endpoint, RenderedConfig};

/// How long `envoy --mode validate` may take.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(60);
/// One admin request (connect, send, read) may take this long.
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between two `/ready` polls.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Distinguishes files and base ids of processes started by this process.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Why `envoy --mode validate` rejected a config (or could not run).
#[derive(Debug)]
#[non_exhaustive]
pub enum ValidateError {
    /// The temporary config or output files could not be written or read.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// Envoy could not be started.
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Envoy rejected the config.
    Invalid {
        /// Envoy's exit status.
        status: ExitStatus,
        /// What Envoy printed.
        output: String,
    },
    /// Validation did not finish in time.
    Timeout,
}

impl fmt::Display for ValidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Spawn { binary, source } => {
                write!(f, "cannot run {}: {source}", binary.display())
            }
            Self::Invalid { status, output } => {
                write!(f, "envoy --mode validate failed ({status}):\n{output}")
            }
            Self::Timeout => write!(
                f,
                "envoy --mode validate did not finish within {VALIDATE_TIMEOUT:?}"
            ),
        }
    }
}

impl Error for ValidateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::Spawn { source, .. } => Some(source),
            Self::Invalid { .. } | Self::Timeout => None,
        }
    }
}

/// Check `yaml` with `envoy --mode validate` (stdin from `/dev/null`). The
/// config is written to a temporary file, removed afterwards.
///
/// # Errors
///
/// [`ValidateError::Invalid`] with Envoy's output when the config is
/// rejected; the other variants when Envoy could not be run.
pub fn validate(binary: &Path, yaml: &str) -> Result<(), ValidateError> {
    let dir = scratch_dir().map_err(|source| ValidateError::Io {
        context: "creating a temporary directory".into(),
        source,
    })?;
    let result = validate_in(binary, yaml, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn validate_in(binary: &Path, yaml: &str, dir: &Path) -> Result<(), ValidateError> {
    let io_err = |context: &str| {
        let context = context.to_owned();
        move |source| ValidateError::Io { context, source }
    };
    let config = dir.join("envoy.yaml");
    fs::write(&config, yaml).map_err(io_err("writing the config"))?;
    let log = dir.join("validate.log");
    let out = File::create(&log).map_err(io_err("creating the output file"))?;
    let err = out.try_clone().map_err(io_err("cloning the output file"))?;
    let mut child = Command::new(binary)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|source| ValidateError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    let deadline = Instant::now() + VALIDATE_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(io_err("waiting for envoy"))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ValidateError::Timeout);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(ValidateError::Invalid {
            status,
            output: fs::read_to_string(&log).unwrap_or_default(),
        })
    }
}

/// A fresh directory under the system temporary directory.
fn scratch_dir() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "mesh-envoy-{}-{}-{:x}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed),
        RandomState::new().hash_one(Instant::now()),
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A block of `count` consecutive TCP ports on 127.0.0.1 that were free a
/// moment ago (each bound and released), for [`MeshTopology::loopback`].
/// Chosen at random in 20000..32000, below Linux's ephemeral range, so
/// parallel tests rarely collide.
///
/// # Errors
///
/// The last bind error when 200 tries found no free block.
///
/// [`MeshTopology::loopback`]: super::MeshTopology::loopback
pub fn free_port_block(count: u16) -> io::Result<u16> {
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_000;
    let span = u64::from(HIGH - LOW - count.min(HIGH - LOW));
    let random = RandomState::new();
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port block");
    for attempt in 0..200u32 {
        let offset = random.hash_one((attempt, std::process::id())) % span.max(1);
        let base = LOW + u16::try_from(offset).unwrap_or(0);
        let mut held = Vec::with_capacity(usize::from(count));
        let mut ok = true;
        for port in base..base.saturating_add(count) {
            match StdTcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => held.push(listener),
                Err(e) => {
                    last = e;
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Ok(base);
        }
    }
    Err(last)
}

/// Why an Envoy process could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// Writing the config or opening the log failed.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The binary could not be started.
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Spawn { binary, source } => {
                write!(f, "cannot start {}: {source}", binary.display())
            }
        }
    }
}

impl Error for SpawnError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::Spawn { source, .. } => Some(source),
        }
    }
}

/// Why [`EnvoyProcess::wait_ready`] gave up.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadyError {
    /// Envoy exited before it was ready.
    Exited {
        /// The proxy.
        proxy: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// `/ready` did not answer 200 in time.
    Timeout {
        /// The proxy.
        proxy: &'static str,
        /// How long we waited.
        waited: Duration,
        /// The last admin answer or error.
        last: String,
        /// The end of its log.
        log_tail: String,
    },
}

impl fmt::Display for ReadyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited {
                proxy,
                status,
                log_tail,
            } => write!(
                f,
                "envoy {proxy} exited ({status}) before ready:\n{log_tail}"
            ),
            Self::Timeout {
                proxy,
                waited,
                last,
                log_tail,
            } => write!(
                f,
                "envoy {proxy} not ready after {waited:?} (last: {last}):\n{log_tail}"
            ),
        }
    }
}

impl Error for ReadyError {}

/// A running Envoy, killed (and its hot-restart shared memory removed) on
/// drop.
///
/// Started with stdin from `/dev/null`, its own `--base-id` (several Envoys
/// share the machine), `--service-cluster` / `--service-node` set to the
/// proxy name, `--log-level warn`, access logs flushed every 100 ms
/// (`--file-flush-interval-msec`, Envoy's default is 10 s), and
/// stdout/stderr to a log file.
#[derive(Debug)]
pub struct EnvoyProcess {
    child: Mutex<Child>,
    proxy: &'static str,
    admin: Endpoint,
    base_id: u32,
    log_path: PathBuf,
    config_path: PathBuf,
}

impl EnvoyProcess {
    /// Start `binary` with `config`. The config is written next to
    /// `log_path` (same name, extension `config.yaml`); Envoy's own output
    /// goes to `log_path`. Returns at once: call
    /// [`wait_ready`](Self::wait_ready) before sending traffic.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] when the files cannot be written or Envoy not started.
    pub fn spawn(
        binary: &Path,
        config: &RenderedConfig,
        log_path: &Path,
    ) -> Result<Self, SpawnError> {
        let io_err = |context: String| move |source| SpawnError::Io { context, source };
        if let Some(dir) = log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let config_path = log_path.with_extension("config.yaml");
        fs::write(&config_path, &config.yaml)
            .map_err(io_err(format!("writing {}", config_path.display())))?;
        let out =
            File::create(log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let err = out
            .try_clone()
            .map_err(io_err(format!("cloning {}", log_path.display())))?;
        let base_id = unique_base_id();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .args(["--service-cluster", &config.service_cluster])
            .args(["--service-node", config.proxy])
            .args(["--base-id", &base_id.to_string()])
            .args(["--log-level", "warn"])
            .args(["--file-flush-interval-msec", "100"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| SpawnError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        Ok(Self {
            child: Mutex::new(child),
            proxy: config.proxy,
            admin: config.admin.clone(),
            base_id,
            log_path: log_path.to_owned(),
            config_path,
        })
    }

    /// The proxy name.
    pub fn proxy(&self) -> &'static str {
        self.proxy
    }

    /// The admin API address.
    pub fn admin(&self) -> &Endpoint {
        &self.admin
    }

    /// Where Envoy's own log goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The config file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.lock().id()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        self.lock().try_wait()
    }

    /// Poll the admin `/ready` (each request bounded to 500 ms, 25 ms apart)
    /// until it answers 200, Envoy exits, or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`ReadyError`] with the end of Envoy's log.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ReadyError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.try_wait() {
                return Err(ReadyError::Exited {
                    proxy: self.proxy,
                    status,
                    log_tail: self.log_tail(),
                });
            }
            let last = match self.admin_get("/ready").await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("{code} {}", body.trim()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                return Err(ReadyError::Timeout {
                    proxy: self.proxy,
                    waited: start.elapsed(),
                    last,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
    }

    /// `GET <path>` on the admin API (e.g. `/stats/prometheus`): status code
    /// and body. Bounded to 500 ms.
    ///
    /// # Errors
    ///
    /// Connection errors, a timeout, or a malformed answer.
    pub async fn admin_get(&self, path: &str) -> io::Result<(u16, String)> {
        admin_get(&self.admin, path, ADMIN_REQUEST_TIMEOUT).await
    }

    /// The last few lines Envoy logged.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kill Envoy now and wait for it (also done on drop).
    ///
    /// # Errors
    ///
    /// The error from waiting for the process.
    pub fn kill(&self) -> io::Result<()> {
        let mut child = self.lock();
        if child.try_wait()?.is_none() {
            // It may exit between the check and the kill: ignore that error.
            let _ = child.kill();
            child.wait()?;
        }
        // Envoy never removes its hot-restart shared memory, not even on
        // SIGTERM; with a fresh base id per process they would pile up.
        let _ = fs::remove_file(format!(
            "/dev/shm/envoy_shared_memory_{}",
            u64::from(self.base_id) * 10
        ));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A hot-restart base id no other Envoy started on this machine by these
/// tests or the demo uses: derived from the process id and a counter.
fn unique_base_id() -> u32 {
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 100;
    // pid_max is at most 2^22; 100 ids per process; the product stays far
    // below u32::MAX / 10 (Envoy multiplies the id by 10).
    (std::process::id() % 4_000_000) * 100 + seq + 1
}

/// A minimal HTTP/1.1 GET over a fresh connection (`Connection: close`).
async fn admin_get(admin: &Endpoint, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let request = async {
        let mut stream = TcpStream::connect((admin.host.as_str(), admin.port)).await?;
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, io::Error>(raw)
    };
    let raw = tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "admin request timed out"))??;
    let text = String::from_utf8_lossy(&raw);
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(invalid)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// Join the chunks of a chunked body (lenient: stops at anything odd).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        if size == 0 || rest.len() < size || !rest.is_char_boundary(size) {
            break;
        }
        out.push_str(&rest[..size]);
        let rest = &rest[size..];
        body = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_joins_chunks() {
        assert_eq!(dechunk("4\r\nLIVE\r\n1\r\n\n\r\n0\r\n\r\n"), "LIVE\n");
    }

    #[test]
    fn base_ids_differ() {
        assert_ne!(unique_base_id(), unique_base_id());
    }

    #[test]
    fn free_port_block_is_bindable() {
        let base = free_port_block(3).expect("free block");
        assert!((20_000..32_000).contains(&base));
    }
}
