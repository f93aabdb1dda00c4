#!/usr/bin/env bash
# The GPU check of issue 17: the service on the Keras/JAX runtime beside raw Keras-on-JAX predict_on_batch,
# images/s and p99 at batch 64, 1,024 and 8,192 on JAX's default device (python -m bench.gpu; --help).
#
#   bench/gpu.sh --quick                  small batches, any device (the CPU test runs this)
#   bench/gpu.sh --out "$OUT"             the full run; gpu.json goes to --out
#   bench/gpu.sh wheels                   where pip works: download the wheels the GPU machine lacks into .whl/
#
# On the GPU machine (Python 3.12, JAX with CUDA, no TensorFlow, no package registry) the service's packages
# (bentoml, keras, pydantic-settings, orjson, uvicorn, httptools, tritonclient, ...: bench/gpu_wheels.txt,
# 44 wheels, ~17 MB) are missing. Download them where pip works (`bench/gpu.sh wheels`; add `/.whl/` to
# .git/info/exclude), carry `.whl` with the working tree, and this script installs them into /tmp/site
# before the run. Budget: about 2 minutes there (build, raw, server start with 14 buckets compiled, service).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi

if [ "${1:-}" = "wheels" ]; then
  platforms=""
  for p in manylinux_2_17 manylinux_2_24 manylinux_2_26 manylinux_2_27 manylinux_2_28 manylinux_2_31 \
           manylinux_2_34 manylinux_2_35 manylinux2014 manylinux1; do
    platforms="$platforms --platform ${p}_x86_64"
  done
  # shellcheck disable=SC2086
  exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    $platforms -d .whl -r <(grep -v '^#' bench/gpu_wheels.txt)
fi

if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
exec "$PY" -m bench.gpu "$@"
