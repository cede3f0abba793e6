#!/usr/bin/env bash
# The main job, set-up included. Until the live server lands, that is building the bundled
# corpus (all 20 sign languages) into data/corpus. Extra arguments go to `signstream data build`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/signstream data build "$@"
