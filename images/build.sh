#!/usr/bin/env bash
# Build and push both tfopt images, tagged with the package version:
#
#   images/build.sh                       # -> ghcr.io/tfopt/tfopt:<ver>, ghcr.io/tfopt/tfopt-gpu:<ver>
#   TFOPT_IMAGE_REPO=us-docker.pkg.dev/proj/repo/tfopt images/build.sh
#   PUSH=0 images/build.sh                # build only
#
# The tag is setup.cfg's version, the same one tfopt.components._image puts in
# every compiled pipeline; compile with the same TFOPT_IMAGE_REPO.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
REPO=${TFOPT_IMAGE_REPO:-ghcr.io/tfopt/tfopt}
VERSION=$(PYTHONPATH=src "$PYTHON" -c "import tfopt; print(tfopt.__version__)")
PUSH=${PUSH:-1}

rm -rf dist
"$PYTHON" -m pip wheel --no-deps --wheel-dir dist .
test -f "dist/tfopt-${VERSION}-py3-none-any.whl"

for suffix in "" "-gpu"; do
  image="${REPO}${suffix}:${VERSION}"
  docker build --file images/Dockerfile --build-arg "TFOPT_VERSION=${VERSION}" \
    --build-arg "BASE_IMAGE=tensorflow/tensorflow:2.21.0${suffix}" \
    --build-arg "IMAGE_TITLE=tfopt${suffix}" --tag "$image" .
  if [ "$PUSH" = 1 ]; then docker push "$image"; fi
  echo "built ${image}"
done
