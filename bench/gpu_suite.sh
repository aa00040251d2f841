#!/usr/bin/env bash
# The GPU suite on the device machine (one H200, no network): results land in $OUT.
#   bash bench/gpu_suite.sh            # about 6-8 min, bounded by --budget-s 420
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the library from this tree, no install
exec python bench/gpu_suite.py --out "${OUT:?set OUT to the results directory}" "$@"
