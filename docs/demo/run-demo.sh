#!/usr/bin/env bash
# The clarad demo: a real tritonserver serves a job of a two-operator pipeline, end to end.
# Sets up .venv-demo, runs clarad on a temporary state directory, drops a model, a pipeline and a
# payload the way a person would (write elsewhere, then rename into the inbox), prints the result,
# and stops clarad cleanly.
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
echo "== setting up .venv-demo (clarad + nvidia-pytriton's tritonserver)"
source docs/venv.sh "$root/.venv-demo" "triton"
venv="$root/.venv-demo"
clarad="$venv/bin/clarad"
demo="$root/docs/demo"
work="$(mktemp -d -t clarad-demo.XXXXXX)"
state="$work/state"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...: poll every 0.1 s
  local limit=$(( $1 * 10 )) what="$2"; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what; clarad's log:" >&2; cat "$work/clarad.log" >&2; exit 1
}
drop() {  # drop SOURCE INBOX-FOLDER: copy next to the inbox, then rename into it (atomic)
  cp -r "$1" "$work/staging/"
  mv "$work/staging/$(basename "$1")" "$state/inbox/$2/"
}
job_stopped() {
  "$clarad" jobs list --json --state-dir "$state" \
    | "$venv/bin/python" -c 'import json,sys; jobs=json.load(sys.stdin); sys.exit(not jobs or jobs[0]["state"] != "STOPPED")'
}

mkdir -p "$work/staging"
echo "== starting clarad run on $state (log: clarad.log)"
CLARAD_USE_GPUS="${CLARAD_USE_GPUS:-true}" "$clarad" run --state-dir "$state" --metrics-port 0 >"$work/clarad.log" 2>&1 &
pid=$!
wait_until 30 "clarad to answer" "$clarad" status --state-dir "$state"

echo "== dropping the model 'affine' (y = 2x + 1, Python backend)"
drop "$demo/models/affine" models
wait_until 30 "the model" test -d "$state/models/affine"
"$clarad" models list --state-dir "$state"

echo "== dropping the pipeline 'affine-demo' (prepare -> infer; infer asks for model affine)"
sed -e "s#@PYTHON@#$venv/bin/python#g" -e "s#@OPERATORS@#$demo/operators#g" "$demo/pipeline.yaml.in" > "$work/staging/affine-demo.yaml"
mv "$work/staging/affine-demo.yaml" "$state/inbox/pipelines/"
wait_until 30 "the pipeline" test -d "$state/inbox/jobs/affine-demo"
"$clarad" pipelines list --state-dir "$state"

echo "== dropping a payload: numbers.txt = 1 2 3 4"
echo "1 2 3 4" > "$work/numbers.txt"
drop "$work/numbers.txt" jobs/affine-demo
wait_until 180 "the job to stop" job_stopped
job="$("$clarad" jobs list --json --state-dir "$state" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
"$clarad" jobs show "$job" --state-dir "$state"
echo "== the job's result (operator infer asked Triton at \$NVIDIA_TRITON_GRPCURI):"
cat "$state/jobs/$job/operators/infer/result.json"; echo
echo "== clarad status"
"$clarad" status --state-dir "$state"

echo "== stopping clarad (SIGTERM)"
kill -TERM "$pid"; wait "$pid"; pid=""
if pgrep -f "$state" >/dev/null; then echo "processes of clarad are still running!" >&2; exit 1; fi
echo "== clarad stopped; no tritonserver left. Its log:"
sed -e 's/^/   /' "$work/clarad.log"
