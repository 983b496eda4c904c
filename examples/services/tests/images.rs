//! The images `deploy/k8s/` names, built as `deploy/README.md` says: `deploy/build-images.sh`
//! with buildah (provisioned here: `BUILDAH` if set, else `buildah` on `PATH`, else
//! `apt-get install buildah` once, under a lock in `target/`), offline, from the binaries this
//! test was built with (no second build). Each image is then opened with `buildah mount` and
//! checked from the inside: exactly the binary, the libraries `ldd` lists, the user files; its
//! entrypoint runs `--help` and `--version` under `chroot` as the image's numeric non-root user,
//! which is the user the manifests' `securityContext` names.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The time-bounded command runner the demo provisions with (shared by path: the demo crate
/// depends on this one).
#[path = "../../demo/src/bounded.rs"]
#[allow(dead_code, unreachable_pub)]
mod bounded;

/// The four services and their binaries, as Cargo built them for this test.
const SERVICES: [(&str, &str); 4] = [
    ("frontend", env!("CARGO_BIN_EXE_frontend")),
    ("user", env!("CARGO_BIN_EXE_user")),
    ("order", env!("CARGO_BIN_EXE_order")),
    ("item", env!("CARGO_BIN_EXE_item")),
];

/// The user every image runs as (and every app container's `runAsUser`).
const IMAGE_USER: &str = "65532:65532";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("examples/services sits two levels below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: the nearest ancestor of the binaries holding `CACHEDIR.TAG`.
fn target_dir() -> PathBuf {
    Path::new(SERVICES[0].1)
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| workspace_root().join("target"), Path::to_path_buf)
}

/// `command`'s output; a command still running after ten minutes (an `apt-get` on a hung
/// mirror, a build that stalls) is stopped and fails the test.
fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    bounded::run(command, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn works(program: &str) -> bool {
    bounded::run(
        Command::new(program).arg("--version"),
        Duration::from_secs(60),
    )
    .is_ok_and(|out| out.status.success())
}

/// `BUILDAH`, else `buildah` on `PATH`, else Debian's package installed once under a lock
/// (root needed, as for the image build itself).
fn buildah() -> String {
    if let Some(bin) = std::env::var_os("BUILDAH").filter(|b| !b.is_empty()) {
        let bin = bin.to_string_lossy().into_owned();
        assert!(works(&bin), "BUILDAH={bin} does not run");
        return bin;
    }
    let bin = "buildah".to_owned();
    if works(&bin) {
        return bin;
    }
    let target = target_dir();
    fs::create_dir_all(&target).expect("create target/");
    let lock = File::create(target.join("buildah-install.lock")).expect("create the lock file");
    lock.lock().expect("lock buildah-install.lock");
    if !works(&bin) {
        let install = || {
            run(Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "buildah"])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        let mut out = install();
        if !out.status.success() {
            // A fresh machine has no package lists yet.
            let update = run(Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"));
            assert!(
                update.status.success(),
                "apt-get update failed:\n{}",
                text(&update)
            );
            out = install();
        }
        assert!(
            out.status.success(),
            "apt-get install buildah failed (run as root, or set BUILDAH):\n{}",
            text(&out)
        );
        assert!(works(&bin), "buildah installed but does not run");
    }
    bin
}

/// The shared libraries `binary` loads, as `ldd` resolves them (the loader included), as
/// paths relative to `/`.
fn ldd(binary: &str) -> BTreeSet<String> {
    let out = run(Command::new("ldd").arg(binary));
    assert!(out.status.success(), "ldd {binary}: {}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("not found"), "ldd {binary}: {listing}");
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some(*path),
                [path, ..] if path.starts_with('/') => Some(*path),
                _ => None,
            }
        })
        .map(|path| path.trim_start_matches('/').to_owned())
        .collect()
}

/// Every regular file under `root`, relative to it (symbolic links are reported too, so an
/// image that relied on one would show).
fn files(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("read the image's file system") {
            let entry = entry.expect("directory entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                let relative = entry
                    .path()
                    .strip_prefix(root)
                    .expect("under root")
                    .to_owned();
                found.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// Every `mesh/…` image in the committed manifests, with the `runAsUser` and `runAsNonRoot`
/// of its container.
fn manifest_images() -> Vec<(String, Option<u64>, Option<bool>)> {
    let mut images = Vec::new();
    for dir in ["deploy/k8s", "deploy/k8s/istio"] {
        for entry in fs::read_dir(workspace_root().join(dir)).expect("read deploy/k8s") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let yaml = fs::read_to_string(&path).expect("read manifest");
            for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
                let doc: serde_yaml_ng::Value =
                    serde::Deserialize::deserialize(doc).expect("manifest parses");
                let containers = &doc["spec"]["template"]["spec"]["containers"];
                for container in containers.as_sequence().into_iter().flatten() {
                    let Some(image) = container["image"].as_str() else {
                        continue;
                    };
                    if image.starts_with("mesh/") {
                        let security = &container["securityContext"];
                        images.push((
                            image.to_owned(),
                            security["runAsUser"].as_u64(),
                            security["runAsNonRoot"].as_bool(),
                        ));
                    }
                }
            }
        }
    }
    images
}

struct Buildah {
    bin: String,
    root: PathBuf,
    runroot: PathBuf,
    containers: Vec<String>,
}

impl Buildah {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .env("STORAGE_DRIVER", "vfs")
            .env("BUILDAH_ISOLATION", "chroot");
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = run(self.command().args(args));
        assert!(out.status.success(), "buildah {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A working container of `image` and its mounted root file system.
    fn open(&mut self, image: &str) -> PathBuf {
        let container = self.ok(&["from", "--pull-never", image]);
        let mount = PathBuf::from(self.ok(&["mount", &container]));
        self.containers.push(container);
        mount
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = run(self.command().args(["rm", container]));
        }
    }
}

#[test]
fn build_images_builds_what_the_manifests_name_and_each_runs_as_non_root() {
    let work = target_dir().join("image-test");
    // Each run starts from empty storage, so nothing from an earlier run is checked.
    if work.exists() {
        fs::remove_dir_all(&work).expect("remove the previous run's storage");
    }
    let mut buildah = Buildah {
        bin: buildah(),
        root: work.join("root"),
        runroot: work.join("runroot"),
        containers: Vec::new(),
    };
    let bin_dir = Path::new(SERVICES[0].1).parent().expect("bin dir");
    let archives = work.join("archives");
    let version = env!("CARGO_PKG_VERSION");

    let out = run(
        Command::new(workspace_root().join("deploy/build-images.sh"))
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg("--root")
            .arg(&buildah.root)
            .arg("--runroot")
            .arg(&buildah.runroot)
            .arg("--archive")
            .arg(&archives)
            .arg("--check")
            .env("BUILDAH", &buildah.bin)
            .env("STORAGE_DRIVER", "vfs")
            .env("BUILDAH_ISOLATION", "chroot"),
    );
    assert!(
        out.status.success(),
        "deploy/build-images.sh failed:\n{}",
        text(&out)
    );
    let built: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = SERVICES
        .iter()
        .map(|(svc, _)| format!("docker.io/mesh/{svc}:{version}"))
        .collect();
    assert_eq!(built, expected, "the script prints the images it built");
    let stored = buildah.ok(&["images", "--noheading", "--format", "{{.Name}}:{{.Tag}}"]);
    for image in &expected {
        assert!(
            stored.lines().any(|l| l == image),
            "{image} in storage: {stored}"
        );
    }

    // What the manifests pull is what was built, and their securityContext is the image's user.
    let uid: u64 = IMAGE_USER.split(':').next().unwrap().parse().unwrap();
    let named = manifest_images();
    assert!(
        named.len() >= 6,
        "the Envoy and Istio manifests run six app containers at least: {named:?}"
    );
    for (image, run_as_user, run_as_non_root) in &named {
        let qualified = format!("docker.io/{image}");
        assert!(
            expected.contains(&qualified),
            "{image} (in deploy/k8s) is built"
        );
        assert_eq!(*run_as_user, Some(uid), "{image}: runAsUser");
        assert_eq!(*run_as_non_root, Some(true), "{image}: runAsNonRoot");
    }

    for ((svc, binary), image) in SERVICES.iter().zip(&expected) {
        let inspect: serde_json::Value =
            serde_json::from_str(&buildah.ok(&["inspect", "--type", "image", image]))
                .expect("buildah inspect prints JSON");
        let config = &inspect["OCIv1"]["config"];
        let entrypoint = format!("/usr/local/bin/{svc}");
        assert_eq!(config["User"], IMAGE_USER, "{image}: user");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!([entrypoint]),
            "{image}: entrypoint"
        );
        assert!(
            config["Cmd"].as_array().is_none_or(Vec::is_empty),
            "{image}: no default arguments: {}",
            config["Cmd"]
        );
        assert_eq!(inspect["OCIv1"]["os"], "linux", "{image}: os is linux");

        let rootfs = buildah.open(image);
        let mut want: BTreeSet<String> = ldd(binary);
        assert!(
            want.iter().any(|l| l.contains("libc.so")),
            "{binary} links glibc: {want:?}"
        );
        want.extend([
            format!("usr/local/bin/{svc}"),
            "etc/passwd".to_owned(),
            "etc/group".to_owned(),
            "etc/nsswitch.conf".to_owned(),
        ]);
        assert_eq!(
            files(&rootfs),
            want,
            "{image} holds exactly the binary, the libraries it links and the user files"
        );
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
        assert!(
            passwd
                .lines()
                .any(|l| l.starts_with("nonroot:x:65532:65532:")),
            "{image}: /etc/passwd names 65532: {passwd}"
        );
        let in_image = fs::metadata(rootfs.join(format!("usr/local/bin/{svc}"))).unwrap();
        let original = fs::metadata(binary).unwrap();
        assert!(
            in_image.len() < original.len(),
            "{image}: the binary is stripped ({} of {} bytes)",
            in_image.len(),
            original.len()
        );

        for (arg, expect) in [
            ("--help", format!("Usage: {svc} [OPTIONS]")),
            ("--version", format!("{svc} {version}")),
        ] {
            let out = run(Command::new("chroot")
                .arg(format!("--userspec={IMAGE_USER}"))
                .arg(&rootfs)
                .arg(&entrypoint)
                .arg(arg));
            let shown = text(&out);
            assert!(
                out.status.success() && shown.contains(&expect),
                "{image}: {entrypoint} {arg} as {IMAGE_USER} in the image's own root:\n{shown}"
            );
        }

        // The archive `kind load image-archive` / `docker load` takes, tagged as the manifests
        // expect.
        let archive = archives.join(format!("{svc}.tar"));
        let out = run(Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json"));
        assert!(
            out.status.success(),
            "{}: {}",
            archive.display(),
            text(&out)
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("docker-archive manifest.json");
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!([image]),
            "{}: tagged",
            archive.display()
        );
    }
}

/// `deploy/Dockerfile` (the registry route) builds the same images: one target per service,
/// the same entrypoints, the same numeric user, the same binaries.
#[test]
fn the_dockerfile_matches_the_offline_build() {
    let dockerfile =
        fs::read_to_string(workspace_root().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cargo build --release --locked -p services --bins")),
        "the build stage builds the service binaries"
    );
    let runtime = lines
        .iter()
        .position(|l| l.starts_with("FROM ") && l.ends_with(" AS runtime"))
        .expect("a runtime stage");
    assert!(
        lines[runtime].contains(":nonroot"),
        "runtime on a non-root base"
    );
    assert_eq!(lines[runtime + 1], format!("USER {IMAGE_USER}"));
    for (svc, _) in SERVICES {
        let stage = lines
            .iter()
            .position(|l| *l == format!("FROM runtime AS {svc}"))
            .unwrap_or_else(|| panic!("a `{svc}` target"));
        let body: Vec<&str> = lines[stage + 1..]
            .iter()
            .take_while(|l| !l.starts_with("FROM "))
            .copied()
            .collect();
        assert!(
            body.contains(&format!("COPY --from=build /out/{svc} /usr/local/bin/{svc}").as_str()),
            "{svc}: copies its binary: {body:?}"
        );
        assert!(
            body.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{svc}\"]").as_str()),
            "{svc}: entrypoint: {body:?}"
        );
    }
}
