#!/usr/bin/env bash
# The shipped Grafana dashboard against a real Prometheus (Debian's `prometheus` package) scraping a
# running clarad and its Triton instances: every query must return data.
#   bash tests/monitoring/run.sh [PYTEST ARGS]
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "tests/monitoring SKIPPED: it needs Prometheus (as root: apt-get install prometheus)" >&2
    exit 0
  fi
  echo "== installing prometheus (Debian's package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Its package starts a Prometheus of its own where systemd runs; the test starts its own on other ports.
fi
source docs/venv.sh "$root/.venv-test" "triton,test"
exec .venv-test/bin/python -m pytest tests/monitoring "$@"
