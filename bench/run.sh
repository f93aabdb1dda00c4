#!/usr/bin/env bash
# The side-by-side benchmark in one command: ./bench/run.sh [--quick] [--servers ours,...] (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench "$@"
