#!/usr/bin/env bash
# Build (and optionally push) the tfopt images from images/Dockerfile, tagged with the
# package version that tfopt.components._image puts in every compiled pipeline:
#
#   make images                           # here: local Debian base, CPU image, no push
#   images/build.sh                       # -> ghcr.io/tfopt/tfopt:<ver>, ghcr.io/tfopt/tfopt-gpu:<ver>
#   TFOPT_IMAGE_REPO=us-docker.pkg.dev/proj/repo/tfopt PUSH=1 images/build.sh
#   LOCAL_BASE=1 FLAVOURS=cpu images/build.sh   # base from images/base.sh (no Docker Hub)
#   RENDER=1 images/build.sh              # print the build commands, build nothing
#   TFOPT_BASE_CPU=REG/tensorflow@sha256:... TFOPT_BASE_GPU=... images/build.sh   # pinned bases
#
# A build is skipped while the image's tfopt.build-hash label (wheel contents, Dockerfile,
# pins, base) matches; the layers themselves live in the engine's store.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
REPO=${TFOPT_IMAGE_REPO:-ghcr.io/tfopt/tfopt}
VERSION=$(PYTHONPATH=src "$PYTHON" -c "import tfopt; print(tfopt.__version__)")
PUSH=${PUSH:-0}
LOCAL_BASE=${LOCAL_BASE:-0}
FLAVOURS=${FLAVOURS:-cpu gpu}
RENDER=${RENDER:-0}
CA=/etc/ssl/certs/ca-certificates.crt

# the wheel's contents (not its zip timestamps), the Dockerfile, the pins and the base
build_hash() {
  { "$PYTHON" -c 'import hashlib, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in sorted(z.namelist()): print(n, hashlib.sha256(z.read(n)).hexdigest())' "$WHEEL"
    cat images/Dockerfile requirements/constraints.txt requirements/litert.txt; echo "$1"; } \
    | sha256sum | cut -c1-16
}
run() { if [ "$RENDER" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi; }

if [ "$RENDER" = 1 ]; then ENGINE=${ENGINE:-podman}
elif [ -n "${ENGINE:-}" ]; then :
elif docker info >/dev/null 2>&1; then ENGINE=docker
else images/engine.sh; ENGINE=podman; fi

if [ "$RENDER" != 1 ]; then
  rm -rf dist
  "$PYTHON" -m pip wheel -q --no-deps --wheel-dir dist . >/dev/null
fi
WHEEL="dist/tfopt-${VERSION}-py3-none-any.whl"
# the dependencies' layer is keyed by this file, not by the wheel (Dockerfile: two layers)
if [ "$RENDER" != 1 ]; then
  "$PYTHON" -c 'import email, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = email.message_from_bytes(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))))
print("\n".join(r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r))' \
    "$WHEEL" >dist/requirements.txt
fi

for flavour in $FLAVOURS; do
  case "$flavour" in
    cpu) suffix="" ;;
    gpu) suffix="-gpu" ;;
    *) echo "unknown flavour '$flavour' in FLAVOURS (allowed: cpu gpu)" >&2; exit 2 ;;
  esac
  image="${REPO}${suffix}:${VERSION}"
  if [ "$LOCAL_BASE" = 1 ]; then
    [ "$flavour" = gpu ] && { echo "LOCAL_BASE=1 has no CUDA: build gpu from tensorflow/tensorflow:2.21.0-gpu" >&2; exit 2; }
    if [ "$RENDER" = 1 ]; then base="localhost/tfopt-base:<hash of images/base.sh>"; else base=$(ENGINE=$ENGINE images/base.sh); fi
  else
    pin="TFOPT_BASE_${flavour^^}"  # e.g. TFOPT_BASE_GPU=REGISTRY/tensorflow@sha256:... (a mirror)
    base="${!pin:-tensorflow/tensorflow:2.21.0${suffix}}"
  fi
  args=(--file images/Dockerfile --build-arg "TFOPT_VERSION=${VERSION}"
        --build-arg "BASE_IMAGE=${base}" --build-arg "IMAGE_TITLE=tfopt${suffix}")
  if [ "$ENGINE" = podman ]; then
    # no CAP_SYS_RESOURCE here: the limits measured to work (issue 17)
    args+=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
    # build-time mounts only: the host's CA bundle (registry TLS here) and pip's cache
    [ -f "$CA" ] && args+=(-v "${CA}:${CA}:ro" --build-arg "PIP_CERT=${CA}")
    mkdir -p "${HOME}/.cache/pip" && args+=(-v "${HOME}/.cache/pip:/root/.cache/pip")
  fi
  if [ "$RENDER" = 1 ]; then hash="<content hash>"; else
    hash=$(build_hash "$base")
  fi
  have=$("$ENGINE" image inspect --format '{{ index .Config.Labels "tfopt.build-hash" }}' "$image" 2>/dev/null || true)
  if [ "$RENDER" != 1 ] && [ "$have" = "$hash" ]; then
    echo "cached ${image} (build hash ${hash})"
  else
    start=$(date +%s)
    run "$ENGINE" build "${args[@]}" --label "tfopt.build-hash=${hash}" --tag "$image" .
    [ "$RENDER" = 1 ] || echo "built ${image} in $(( $(date +%s) - start )) s"
  fi
  if [ "$RENDER" != 1 ]; then
    size=$("$ENGINE" image inspect --format '{{ .Size }}' "$image")
    echo "image ${image} size $(( size / 1000000 )) MB"
  fi
  if [ "$PUSH" = 1 ]; then run "$ENGINE" push "$image"; fi
done
