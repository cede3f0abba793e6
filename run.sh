#!/usr/bin/env bash
# The main job, set-up included: the live server on the bundled engine and avatar
# (config.toml). It prints the URL to open. Extra arguments go to `signstream serve`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/signstream serve "$@"
