#!/usr/bin/env bash
# Longer property-based fuzzing of the whole OpenAPI schema (schemathesis) against a real
# service (Redis, workers, vLLM) started by the test fixtures: every answer must be no 5xx and
# conform to the schema. Half the bodies carry a Unicode edge case (lone surrogate, NUL,
# overlong string) in one of their strings or keys (tests/api/test_fuzz.py). The test suite
# runs the same test with 60 examples per operation.
#
#   bench/fuzz.sh            # 500 examples per operation (about 12,000 requests)
#   bench/fuzz.sh 2000       # more
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-500}"
RAGQ_FUZZ_EXAMPLES="$examples" exec .venv/bin/python -m pytest tests/api/test_fuzz.py \
  -q -s -p no:cacheprovider --timeout 0 "${@:2}"
