#!/usr/bin/env bash
# Set up a virtual environment (.venv-test) and run clarad's whole test suite against a real tritonserver.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source docs/venv.sh "$root/.venv-test" "triton,test"
echo "== mypy (strict on the pure decision modules)"
.venv-test/bin/python -m mypy clarad
echo "== pytest"
exec .venv-test/bin/python -m pytest "$@"
