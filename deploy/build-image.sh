#!/bin/sh
# Install a worker node into a virtualenv: the steps of deploy/Dockerfile, runnable without Docker.
#
#   deploy/build-image.sh PREFIX WHEELS [APP_REQUIREMENTS]
#
# PREFIX: the virtualenv to create (/opt/worker in the image); WHEELS: a directory holding the wheels of
# worker-core, worker-redis, worker-otel and workerctl (`uv build --all-packages --out-dir WHEELS`);
# APP_REQUIREMENTS: an optional requirements file of the application. Third-party packages come from the index.
# The last step proves the install: `workerctl version` and the worker's --help, with no network or Redis.
set -eu

PREFIX=${1:?usage: build-image.sh PREFIX WHEELS [APP_REQUIREMENTS]}
WHEELS=${2:?usage: build-image.sh PREFIX WHEELS [APP_REQUIREMENTS]}
PYTHON=${PYTHON:-python3}

"$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    --find-links "$WHEELS" "workerctl[metrics]"
if [ "${3:-}" ]; then
    "$PREFIX/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
        --find-links "$WHEELS" -r "$3"
fi
"$PREFIX/bin/workerctl" version
"$PREFIX/bin/workerctl" worker --help | grep -q -- "--processes"
echo "installed a worker node in $PREFIX"
