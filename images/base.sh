#!/usr/bin/env bash
# The local stand-in for tensorflow/tensorflow:2.21.0 where Docker Hub cannot be pulled:
# Debian 12 (debootstrap minbase) + Debian's python3.11 in a venv at /opt/python that is
# first on PATH, so the Dockerfile's `python -m pip install` is the same on both bases.
# Cached by content: the tag is the hash of this script, rebuilt only when it changes.
#
#   images/base.sh            # prints the base image's name (localhost/tfopt-base:<hash>)
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-podman}
HASH=$(sha256sum images/base.sh | cut -c1-12)
TAG="localhost/tfopt-base:${HASH}"
if "$ENGINE" image exists "$TAG" 2>/dev/null; then echo "$TAG"; exit 0; fi

ROOT=$(mktemp -d /tmp/tfopt-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOT" http://deb.debian.org/debian >&2
chroot "$ROOT" python3 -m venv /opt/python >&2
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | "$ENGINE" import \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$TAG" >&2
echo "$TAG"
