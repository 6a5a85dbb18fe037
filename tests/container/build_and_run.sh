#!/usr/bin/env bash
# Build the ganserve image for real and run `ganserve generate` inside it, then check its files.
#
# There is no Docker engine on the test machines and `podman run` fails there, so this uses what
# works as root: buildah with chroot isolation, from a Debian base image made with debootstrap
# (see shared/ENVIRONMENT.md, "Containers"). Run as root:
#
#     tests/container/build_and_run.sh
#
# Steps: 1. tools (apt-get installs buildah, podman, debootstrap if missing); 2. the base image
# (debootstrap + podman import, cached in container storage as $BASE); 3. buildah bud of the
# Dockerfile (layers cached); 4. checks of the image (non-root user, ganserve --version, extras);
# 5. `ganserve generate` in the container into a host folder, compared with the same run made on
# the host; 6. the image's default command, which writes into /out.
#
# Environment: GANSERVE_HOST_PYTHON (a python with ganserve installed; default python3),
# GANSERVE_TEST_TARGET (cpu, the default, or gpu), GANSERVE_TEST_IMAGE (default
# localhost/ganserve:test, or :test-gpu), GANSERVE_TEST_BASE (default localhost/debian-bookworm),
# DEBIAN_MIRROR, GANSERVE_KEEP_WORK=1 (keep the output folders). Exits non-zero with a "FAIL:"
# line on any failure.
#
# GANSERVE_TEST_TARGET=gpu builds the Dockerfile's `gpu` target with the Debian base standing in
# for the CUDA image (no CUDA image can be pulled here), so it checks that the target builds, that
# onnxruntime-gpu (its CUDA provider compiled in) and cuda-python are installed, and that
# `ganserve generate` runs in it, on the CPU: not the GPU itself. It downloads about 3 GB of CUDA
# wheels on its first run; CI does not run it.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=${GANSERVE_TEST_TARGET:-cpu}
case $TARGET in
    cpu) IMAGE=${GANSERVE_TEST_IMAGE:-localhost/ganserve:test} ;;
    gpu) IMAGE=${GANSERVE_TEST_IMAGE:-localhost/ganserve:test-gpu} ;;
    *) printf 'build_and_run.sh: FAIL: GANSERVE_TEST_TARGET must be cpu or gpu, got %s\n' "$TARGET" >&2; exit 1 ;;
esac
BASE=${GANSERVE_TEST_BASE:-localhost/debian-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PY=${GANSERVE_HOST_PYTHON:-python3}
N=40
SHARD_SIZE=16

T0=$SECONDS
WORK=""
CONTAINERS=()

log() { printf '[build_and_run %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
fail() { printf 'build_and_run.sh: FAIL: %s\n' "$*" >&2; exit 1; }
on_error() { printf 'build_and_run.sh: FAIL: command exited %s at line %s: %s\n' "$1" "$2" "$3" >&2; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

cleanup() {
    local ctr
    for ctr in "${CONTAINERS[@]}"; do
        buildah rm "$ctr" >/dev/null 2>&1 || printf 'build_and_run.sh: could not remove container %s\n' "$ctr" >&2
    done
    if [[ -n $WORK ]]; then
        # a failed debootstrap can leave proc, sys or a bind-mounted /dev mounted inside the rootfs
        findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | xargs -r umount -l || true
        if [[ ${GANSERVE_KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf --one-file-system "$WORK"; fi
    fi
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || fail "must run as root (buildah with chroot isolation needs it)"
"$HOST_PY" -c 'import ganserve, numpy, PIL' 2>/dev/null \
    || fail "$HOST_PY cannot import ganserve, numpy and PIL; set GANSERVE_HOST_PYTHON to the project's python"

# One run at a time: two builds would race on the base image and the tag.
exec 9>/var/lock/ganserve-container-test.lock
flock 9

# --- 1. tools
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing buildah, podman and debootstrap"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman debootstrap >/dev/null \
        || fail "apt-get install buildah podman debootstrap failed"
fi

WORK=$(mktemp -d /tmp/ganserve-container.XXXXXX)

# --- 2. the base image: Debian with python3 and venv, made by debootstrap (no registry needed)
if podman image exists "$BASE"; then
    log "base image $BASE: cached"
else
    log "base image $BASE: debootstrap bookworm from $MIRROR (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null || fail "podman import of the rootfs failed"
    rm -rf "$WORK/rootfs"
    log "base image $BASE: made"
fi

# --- 3. the image (pip inside the build reaches PyPI only with the host's CA bundle mounted)
log "building $IMAGE (target $TARGET) from $ROOT/Dockerfile"
buildah bud --layers --isolation chroot --network host \
    -v /etc/ssl/certs:/etc/ssl/certs:ro --target "$TARGET" \
    --build-arg BASE_IMAGE="$BASE" --build-arg CUDA_IMAGE="$BASE" \
    -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; fail "buildah bud failed (log above)"; }
log "built $IMAGE"

# --- 4. the image's configuration, and what is installed in it
buildah inspect --type image "$IMAGE" >"$WORK/inspect.json"
config() {  # config KEY: the image's OCI config entry, as JSON
    "$HOST_PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["OCIv1"]["config"].get(sys.argv[2])))' \
        "$WORK/inspect.json" "$1"
}
USER_SPEC=$(config User | tr -d '"')
[[ $USER_SPEC != null ]] || USER_SPEC="(none, so root)"
IMAGE_UID=${USER_SPEC%%:*}
[[ $IMAGE_UID =~ ^[0-9]+$ && $IMAGE_UID != 0 ]] \
    || fail "the image's USER is '$USER_SPEC'; expected a numeric non-root uid"
[[ $(config Entrypoint) == '["ganserve"]' ]] || fail "ENTRYPOINT is $(config Entrypoint), expected [\"ganserve\"]"
[[ $(config Volumes) == *'"/out"'* ]] || fail "the image declares no VOLUME /out"
mapfile -t DEFAULT_ARGV < <({ config Entrypoint; config Cmd; } \
    | "$HOST_PY" -c 'import json, sys; print("\n".join(a for line in sys.stdin for a in json.loads(line) or []))')
[[ ${#DEFAULT_ARGV[@]} -gt 1 ]] || fail "the image has no default command (ENTRYPOINT + CMD: ${DEFAULT_ARGV[*]:-none})"

CTR=$(buildah from --quiet "$IMAGE")
CONTAINERS+=("$CTR")
# buildah 1.28 (Debian bookworm) mounts its own anonymous volume for the image's VOLUME /out over a
# `-v HOST:/out`, so the files would never reach the host: drop the volume from this working
# container only (the image's VOLUME /out was checked above).
buildah config --volume /out- "$CTR"
in_ctr() { buildah run --isolation chroot "$@"; }

RUN_UID=$(in_ctr "$CTR" -- id -u)
[[ $RUN_UID == "$IMAGE_UID" ]] || fail "the container runs as uid $RUN_UID, expected $IMAGE_UID (non-root)"
CTR_VERSION=$(in_ctr "$CTR" -- ganserve --version)
HOST_VERSION=$("$HOST_PY" -m ganserve --version)
[[ $CTR_VERSION == "$HOST_VERSION" ]] || fail "ganserve --version: '$CTR_VERSION' in the image, '$HOST_VERSION' on the host"
BACKENDS=$(in_ctr "$CTR" -- ganserve info --json \
    | "$HOST_PY" -c 'import json, sys; print(" ".join(json.load(sys.stdin)["available_backends"]))')
[[ " $BACKENDS " == *" onnxruntime "* ]] || fail "onnxruntime is not available in the image (backends: $BACKENDS)"
[[ " $BACKENDS " != *" torch "* ]] || fail "torch is installed in the $TARGET image (backends: $BACKENDS)"
if [[ $TARGET == gpu ]]; then
    # what the backends import: onnxruntime-gpu's CUDA provider, and cuda-python's runtime module
    GPU_CHECK='import onnxruntime as ort; from cuda.bindings import runtime; p = ort.get_available_providers(); print(*p); assert "CUDAExecutionProvider" in p'
    PROVIDERS=$(in_ctr "$CTR" -- python -c "$GPU_CHECK" 2>"$WORK/gpu-check.log") \
        || { cat "$WORK/gpu-check.log" >&2; fail "the gpu image lacks onnxruntime-gpu's CUDA provider or cuda-python"; }
    log "gpu image: onnxruntime providers $PROVIDERS; cuda-python imports"
fi
log "image OK: uid $RUN_UID, $CTR_VERSION, backends: $BACKENDS"

# --- 5. a sharded run in the container, into a host folder, and the same run on the host
install -d -o "$IMAGE_UID" "$WORK/container" "$WORK/default"
GEN=(generate --n "$N" --shard-size "$SHARD_SIZE" --workers 1)
in_ctr -v "$WORK/container:/out" "$CTR" -- ganserve "${GEN[@]}" --out /out >"$WORK/container.log" 2>&1 \
    || { cat "$WORK/container.log" >&2; fail "ganserve generate failed in the container"; }
log "container run: $(tail -n 1 "$WORK/container.log")"
"$HOST_PY" -m ganserve "${GEN[@]}" --out "$WORK/host" --backend numpy >"$WORK/host.log" 2>&1 \
    || { cat "$WORK/host.log" >&2; fail "ganserve generate failed on the host"; }

# --- 6. the default command (ENTRYPOINT + CMD of the image), which must write into /out
log "default command: ${DEFAULT_ARGV[*]}"
in_ctr -v "$WORK/default:/out" "$CTR" -- "${DEFAULT_ARGV[@]}" >"$WORK/default.log" 2>&1 \
    || { cat "$WORK/default.log" >&2; fail "the image's default command failed"; }

"$HOST_PY" - "$WORK" "$N" "$SHARD_SIZE" "$IMAGE_UID" <<'EOF' || fail "the files written in the container are wrong (see above)"
"""Check the container's files against the layout of `ganserve generate` and the host's run."""
import json, math, sys
from pathlib import Path

import numpy as np
from PIL import Image

work, n, shard_size, uid = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
problems = []


def check_run(out, n, shard_size):
    shards = math.ceil(n / shard_size)
    want_dirs = [f"shard-{s:06d}" for s in range(shards)]
    dirs = sorted(p.name for p in out.glob("shard-*"))
    if dirs != want_dirs:
        problems.append(f"{out}: shard folders {dirs}, expected {want_dirs}")
    for s in range(shards):
        want = [f"{j:08d}.png" for j in range(s * shard_size, min(n, (s + 1) * shard_size))]
        got = sorted(p.name for p in (out / f"shard-{s:06d}").glob("*"))
        if got != want:
            problems.append(f"{out}/shard-{s:06d}: {len(got)} files {got[:3]}..., expected {want[0]}..{want[-1]}")
    if not (out / "manifest.jsonl").is_file():
        problems.append(f"{out}: no manifest.jsonl")
        return []
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    if [(r["shard"], r["start"], r["stop"], r["count"]) for r in records] != [
            (s, s * shard_size, min(n, (s + 1) * shard_size), min(n, (s + 1) * shard_size) - s * shard_size)
            for s in range(shards)]:
        problems.append(f"{out}/manifest.jsonl: records {records}")
    stray = [str(p) for p in out.rglob("*") if p.name.endswith(".tmp")]
    if stray:
        problems.append(f"{out}: temporary files left: {stray}")
    return records


ctr, host, default = work / "container", work / "host", work / "default"
ctr_records = check_run(ctr, n, shard_size)
host_records = check_run(host, n, shard_size)
if {r["model_hash"] for r in ctr_records} != {r["model_hash"] for r in host_records}:
    problems.append("the model in the image differs from the host's (model_hash in the manifests)")
owners = {p.stat().st_uid for p in ctr.rglob("*")}
if owners != {uid}:
    problems.append(f"files in the container's /out are owned by uids {owners}, expected {uid} only")

worst, identical = 0, 0
for j in range(n):
    name = f"shard-{j // shard_size:06d}/{j:08d}.png"
    if not ((ctr / name).is_file() and (host / name).is_file()):
        continue  # reported above
    a, b = (np.asarray(Image.open(d / name), dtype=np.int16) for d in (ctr, host))
    if a.shape != b.shape:
        problems.append(f"{name}: shape {a.shape} in the container, {b.shape} on the host")
        continue
    worst = max(worst, int(np.abs(a - b).max()))
    identical += (ctr / name).read_bytes() == (host / name).read_bytes()
if worst > 1:
    problems.append(f"container images differ from the host's numpy reference by up to {worst} levels (allowed: 1)")
print(f"compared {n} images with the host's numpy run: max difference {worst} level(s), "
      f"{identical} byte-identical files", file=sys.stderr)

default_manifest = default / "manifest.jsonl"
default_records = [json.loads(line) for line in default_manifest.read_text().splitlines()] if default_manifest.is_file() else []
default_pngs = list(default.glob("shard-*/*.png"))
if not default_records or len(default_pngs) != sum(r["count"] for r in default_records):
    problems.append(f"default command: {len(default_pngs)} PNGs for manifest records {default_records}")
print(f"default command wrote {len(default_pngs)} PNGs in {len(default_records)} shard(s) to /out", file=sys.stderr)

for p in problems:
    print("  -", p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

log "PASS: image $IMAGE (target $TARGET) built and ran ganserve generate as uid $IMAGE_UID ($((SECONDS - T0)) s in all)"
