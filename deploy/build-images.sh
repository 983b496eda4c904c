#!/usr/bin/env bash
# Builds the four service images that deploy/k8s/ names (docker.io/mesh/<service>:<version>)
# with buildah, offline: no registry, no base image, no Docker daemon. Each image is built
# from scratch and holds exactly
#
#   /usr/local/bin/<service>      the release binary (stripped when `strip` is available)
#   the shared libraries it links, at the paths `ldd` resolves them to (loader included)
#   /etc/passwd, /etc/group       the numeric non-root user 65532:65532 ("nonroot")
#   /etc/nsswitch.conf            hosts: files dns (the kubelet mounts /etc/hosts, resolv.conf)
#
# with the binary as the entrypoint and 65532:65532 as the user. deploy/Dockerfile builds the
# same images the usual way (multi-stage, distroless) where a registry is reachable.
#
# Usage: deploy/build-images.sh [options] [service...]        (default: frontend user order item)
#
#   --bin-dir DIR     use the binaries in DIR instead of `cargo build --release -p services`
#   --tag TAG         image tag (default: the workspace version in Cargo.toml)
#   --archive DIR     also write DIR/<service>.tar (docker-archive), for `kind load
#                     image-archive`, `minikube image load` or `docker load`
#   --check           run each image's entrypoint with --help inside the image's own root file
#                     system (buildah mount + chroot, as the image's user)
#   --root DIR        buildah storage root (buildah's --root), e.g. to keep a test's images apart
#   --runroot DIR     buildah run root (buildah's --runroot)
#   -h, --help        this text
#
# Environment: BUILDAH (the buildah executable, default `buildah`); buildah's own variables
# apply, e.g. STORAGE_DRIVER=vfs and BUILDAH_ISOLATION=chroot inside a container without
# overlayfs. Run as root, or rootless under `buildah unshare deploy/build-images.sh ...`
# (mounting an image's file system needs the user namespace).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
buildah_bin="${BUILDAH:-buildah}"
bin_dir=""
tag=""
archive_dir=""
check=false
global=()
services=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "build-images: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
        --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
        --archive) archive_dir="${2:?--archive needs a directory}"; shift 2 ;;
        --check) check=true; shift ;;
        --root) global+=(--root "${2:?--root needs a directory}"); shift 2 ;;
        --runroot) global+=(--runroot "${2:?--runroot needs a directory}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) services+=("$1"); shift ;;
    esac
done
((${#services[@]})) || services=(frontend user order item)
for svc in "${services[@]}"; do
    case "$svc" in
        frontend|user|order|item) ;;
        *) die "unknown service '$svc' (frontend, user, order, item)" ;;
    esac
done

if [[ -z "$tag" ]]; then
    # [workspace.package] version = "x.y.z"
    tag="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
    [[ -n "$tag" ]] || die "cannot read the workspace version from $repo/Cargo.toml; pass --tag"
fi

command -v "$buildah_bin" >/dev/null || die "buildah not found (Debian/Ubuntu: apt-get install buildah; or set BUILDAH)"
command -v ldd >/dev/null || die "ldd not found (it lists the shared libraries to copy)"
bh() { "$buildah_bin" "${global[@]}" "$@"; }

if [[ -z "$bin_dir" ]]; then
    echo "== cargo build --release -p services --bins" >&2
    (cd "$repo" && cargo build --release --locked -p services --bins)
    bin_dir="$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
fi
[[ -d "$bin_dir" ]] || die "--bin-dir $bin_dir is not a directory"

# The absolute paths of the shared libraries $1 loads, the dynamic loader included.
libraries() {
    local out
    out="$(ldd "$1" 2>&1)" || {
        # A static binary needs none.
        grep -q 'not a dynamic executable\|statically linked' <<<"$out" && return 0
        die "ldd $1 failed: $out"
    }
    if grep -q 'not found' <<<"$out"; then
        die "$1 links libraries this machine does not have:"$'\n'"$out"
    fi
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
    # linux-vdso has no file.
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out" | sort -u
}

# Copies $1 to $2/$1: symbolic links resolved, so the image has the file under the name the
# binary asks for.
copy_at_path() {
    install -D -m 0755 "$(readlink -f "$1")" "$2$1"
}

containers=()
cleanup() {
    for c in "${containers[@]}"; do
        [[ -n "$c" ]] || continue
        bh rm "$c" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

build() {
    local svc="$1" image="docker.io/mesh/$1:$tag" bin="$bin_dir/$1"
    [[ -x "$bin" ]] || die "$bin is missing (build with cargo build --release -p services, or pass --bin-dir)"
    echo "== $image from $bin" >&2
    local ctr mnt
    ctr="$(bh from --name "mesh-$svc-build-$$" scratch)"
    containers+=("$ctr")
    mnt="$(bh mount "$ctr")"

    install -d -m 0755 "$mnt/usr/local/bin" "$mnt/etc" "$mnt/tmp"
    chmod 1777 "$mnt/tmp"
    install -m 0755 "$bin" "$mnt/usr/local/bin/$svc"
    if command -v strip >/dev/null; then
        strip --strip-unneeded "$mnt/usr/local/bin/$svc"
    else
        echo "   (strip not found: the binary keeps its symbols)" >&2
    fi
    local lib
    while read -r lib; do
        [[ -n "$lib" ]] && copy_at_path "$lib" "$mnt"
    done < <(libraries "$bin")
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$mnt/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$mnt/etc/group"
    printf 'hosts: files dns\n' >"$mnt/etc/nsswitch.conf"
    chmod 0644 "$mnt/etc/passwd" "$mnt/etc/group" "$mnt/etc/nsswitch.conf"
    bh umount "$ctr" >/dev/null

    bh config \
        --entrypoint "[\"/usr/local/bin/$svc\"]" \
        --cmd '' \
        --user 65532:65532 \
        --workingdir / \
        --os linux \
        --label "org.opencontainers.image.title=$svc" \
        --label "org.opencontainers.image.description=The $svc service of the traced mesh (examples/services)" \
        --label "org.opencontainers.image.version=$tag" \
        --label "org.opencontainers.image.licenses=MIT OR Apache-2.0" \
        "$ctr"
    bh commit --quiet --rm "$ctr" "$image" >/dev/null
    containers=("${containers[@]/$ctr}")
    echo "   $(bh images --noheading --format '{{.Name}}:{{.Tag}} {{.Size}}' "$image")" >&2

    if [[ -n "$archive_dir" ]]; then
        mkdir -p "$archive_dir"
        rm -f "$archive_dir/$svc.tar"
        bh push --quiet "$image" "docker-archive:$archive_dir/$svc.tar:$image"
        echo "   $archive_dir/$svc.tar" >&2
    fi
}

# Runs the image's entrypoint with --help in the image's own root file system, as its user.
check() {
    local svc="$1" image="docker.io/mesh/$1:$tag" ctr mnt entrypoint user out
    ctr="$(bh from --name "mesh-$svc-check-$$" "$image")"
    containers+=("$ctr")
    mnt="$(bh mount "$ctr")"
    entrypoint="$(bh inspect --type image --format '{{index .OCIv1.Config.Entrypoint 0}}' "$image")"
    user="$(bh inspect --type image --format '{{.OCIv1.Config.User}}' "$image")"
    if ! out="$(chroot --userspec="$user" "$mnt" "$entrypoint" --help 2>&1)"; then
        die "$image: $entrypoint --help failed as $user:"$'\n'"$out"
    fi
    bh umount "$ctr" >/dev/null
    bh rm "$ctr" >/dev/null
    containers=("${containers[@]/$ctr}")
    echo "   $image: $entrypoint --help runs as $user ($(head -n1 <<<"$out"))" >&2
}

for svc in "${services[@]}"; do
    build "$svc"
done
if $check; then
    for svc in "${services[@]}"; do
        check "$svc"
    done
fi
for svc in "${services[@]}"; do
    echo "docker.io/mesh/$svc:$tag"
done
