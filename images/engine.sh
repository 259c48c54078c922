#!/usr/bin/env bash
# Make sure a container engine is here: podman/buildah/runc/debootstrap from apt when
# missing (root only), plus the two settings these machines need (issue 17): runtime runc
# (crun: "cgroups in hybrid mode not supported") and ulimits no higher than the session's
# (no CAP_SYS_RESOURCE). Exits with one line on stderr saying why when there is no working
# engine: 3 when none can be installed here (not root, or no apt: a developer's machine,
# where the tests that need one skip), 4 when installing it failed or the engine here does
# not work (a broken install: those tests fail; tests/helpers/prerequisites.py).
set -euo pipefail
missing=()
for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "no container engine: ${missing[*]} missing and cannot apt-get install them (need root + apt)" >&2
    exit 3
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || { echo "no container engine: apt-get install ${missing[*]} failed" >&2; exit 4; }
fi
conf=/etc/containers/containers.conf
if [ "$(id -u)" = 0 ] && ! grep -q '^# tfopt engine settings' "$conf" 2>/dev/null; then
  mkdir -p /etc/containers
  cat >>"$conf" <<CONF
# tfopt engine settings (images/engine.sh)
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi
podman info >/dev/null 2>&1 || { echo "no container engine: podman info fails: $(podman info 2>&1 | tail -1)" >&2; exit 4; }
