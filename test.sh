#!/usr/bin/env bash
# Runs the test suite (sets up the machine first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
