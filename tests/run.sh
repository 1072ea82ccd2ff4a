#!/usr/bin/env bash
# Set up a virtual environment (.venv-test) and run clarad's whole test suite against a real tritonserver.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source docs/venv.sh "$root/.venv-test" "triton,test,bench"
# bubblewrap gives host operators Clara's /input and /output paths; its tests need it (as root, install it).
if ! command -v bwrap >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing bubblewrap (operators' mount namespaces)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
    || echo "bubblewrap could not be installed: its tests will be skipped with that reason" >&2
fi
echo "== mypy (strict on the pure decision modules)"
.venv-test/bin/python -m mypy clarad
echo "== pytest"
exec .venv-test/bin/python -m pytest "$@"
