"""Jobs under the installed unit's sandbox: the demo end to end, and children without privilege."""

from __future__ import annotations

import json

import pytest

from tests.system.appliance import DEMO, E2E, PYTHON, Appliance
from tests.waiting import wait_for

OPERATOR_USER_DROP_IN = """\
[Service]
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_KILL
AmbientCapabilities=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_KILL
StateDirectoryMode=0751
ProtectProc=default
Environment=CLARAD_OPERATOR_USER=nobody
"""
SETUID, SETGID, CHOWN, KILL = 1 << 7, 1 << 6, 1 << 0, 1 << 5
SLEEPS = """\
name: sleeps
operators:
- name: sleeps
  command: ["/bin/sleep", "600"]
"""
GREEDY = """\
name: greedy
operators:
- name: greedy
  command: ["/opt/clarad/bin/python", "-c", "import time; block = bytearray(200 << 20); time.sleep(600)"]
  requests: {memory: 50}
"""
MOUNT_NAMESPACE_DROP_IN = """\
[Service]
RestrictNamespaces=user mnt
SystemCallFilter=@mount
"""
READS_INPUT = """\
name: reads-input
operators:
- name: copies
  command: ["/bin/sh", "-c", "cat /input/payload.txt > /output/copy"]
  input: [{path: /input}]
  output: [{path: /output}]
"""


def test_the_demo_dropped_by_a_member_of_group_clara_runs_healthy(appliance: Appliance) -> None:
    appliance.ensure_model(f"{DEMO}/models/affine", "affine")
    pipeline = appliance.read(f"{DEMO}/pipeline.yaml.in").replace("@PYTHON@", PYTHON).replace(
        "@OPERATORS@", f"{DEMO}/operators")
    appliance.ensure_pipeline(pipeline, "affine-demo")
    known = appliance.job_ids()
    appliance.drop_text("1 2 3 4\n", "jobs/affine-demo", "numbers.txt")
    job = appliance.wait_job(known)
    assert job["status"] == "HEALTHY", job
    result = json.loads(appliance.read(f"{job['directory']}/operators/infer/result.json"))
    assert (result["x"], result["y"]) == ([1, 2, 3, 4], [3, 5, 7, 9])
    # Prometheus, running as a user of its own, finds the instance's own metrics through the targets file.
    targets = json.loads(appliance.m.run("cat", "/run/clara/triton-targets.json", user="nobody").stdout)
    address = next(t["targets"][0] for t in targets if t["labels"]["clarad_instance"] == job["instance"])
    fetch = f"import urllib.request as u; print(u.urlopen('http://{address}/metrics').read().decode())"
    assert 'nv_inference_count{model="affine"' in appliance.m.run(PYTHON, "-c", fetch, user="nobody").stdout


def status_fields(text: str) -> dict[str, str]:
    return {key: value.strip() for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


@pytest.mark.parametrize("operator_user", [False, True], ids=["as-installed", "operator_user-drop-in"])
def test_operators_and_python_backend_models_hold_no_privilege(appliance: Appliance, operator_user: bool) -> None:
    if operator_user:
        appliance.drop_in(OPERATOR_USER_DROP_IN)
    main = status_fields(appliance.read(f"/proc/{appliance.show('MainPID')['MainPID']}/status"))
    granted = SETUID | SETGID | CHOWN | KILL if operator_user else 0
    assert (int(main["CapEff"], 16), int(main["CapAmb"], 16)) == (granted, granted), "clarad's own capabilities"

    appliance.ensure_model(f"{E2E}/models/privileges", "privileges")
    appliance.ensure_pipeline(f"""\
name: privileges
operators:
- name: report
  command: ["{PYTHON}", "{E2E}/operators/privileges.py", "privileges"]
  models: [{{name: privileges}}]
""", "privileges")
    known = appliance.job_ids()
    appliance.drop_text("x", "jobs/privileges", "payload.txt")
    job = appliance.wait_job(known)
    out = f"{job['directory']}/operators/report"
    users = {"operator.txt": "nobody" if operator_user else "clara", "model.txt": "clara"}
    for name, user in users.items():  # the operator's report first: it may fault if it became root
        report = appliance.read(f"{out}/{name}")
        assert report.startswith("setresuid(0, 0, 0): Operation not permitted"), f"{name}: {report}"
        fields = status_fields(report)
        held = {key: int(fields[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapAmb")}
        assert held == dict.fromkeys(held, 0), f"{name}: {report}"
        uid = appliance.m.run("id", "-u", user).stdout.strip()
        assert fields["Uid"].split()[0] == uid, f"{name}: {report}"
    assert job["status"] == "HEALTHY", job


@pytest.mark.parametrize("drop_in", [False, True], ids=["as-installed", "mount-namespace-drop-in"])
def test_operators_see_their_declared_paths_only_with_the_mount_namespace_drop_in(appliance: Appliance,
                                                                                   drop_in: bool) -> None:
    if drop_in:
        appliance.drop_in(MOUNT_NAMESPACE_DROP_IN)
    appliance.ensure_pipeline(READS_INPUT, "reads-input")
    known = appliance.job_ids()
    appliance.drop_text("hello", "jobs/reads-input", "payload.txt")
    job = appliance.wait_job(known)
    pid = appliance.show("MainPID")["MainPID"]
    said = [entry["MESSAGE"] for entry in appliance.journal("-p", "warning", f"_PID={pid}")]
    real_directories = [line for line in said if "operators get the real directories" in line]
    if drop_in:  # bwrap's namespace: /input and /output are the job's directories
        assert job["status"] == "HEALTHY", job
        assert appliance.read(f"{job['directory']}/operators/copies/copy") == "hello"
        assert real_directories == []
    else:  # the unit allows no namespace: no /input, and the journal says why
        assert job["status"] == "FAULTED", job
        assert real_directories and "bwrap cannot make a namespace here" in real_directories[0], said


def test_a_cancel_stops_an_operator_running_as_operator_user(appliance: Appliance) -> None:
    appliance.drop_in(OPERATOR_USER_DROP_IN)  # its CAP_KILL lets clarad signal the operator
    appliance.ensure_pipeline(SLEEPS, "sleeps")
    known = appliance.job_ids()
    appliance.drop_text("x", "jobs/sleeps", "payload.txt")
    wait_for(lambda: [p for p in appliance.processes("nobody") if "/bin/sleep 600" in p], 60, "the operator as nobody")
    job_id = next(iter(appliance.job_ids() - known))
    appliance.clarad("jobs", "cancel", job_id)
    job = appliance.wait_job(known, 60)
    assert (job["status"], job["reason"]) == ("CANCELED", "canceled"), job
    assert not [p for p in appliance.processes("nobody") if "/bin/sleep 600" in p]


def test_an_operator_running_as_operator_user_is_held_to_its_memory_request(appliance: Appliance) -> None:
    appliance.drop_in(OPERATOR_USER_DROP_IN)  # its ProtectProc=default lets clarad read the operator's memory
    appliance.ensure_pipeline(GREEDY, "greedy")
    known = appliance.job_ids()
    appliance.drop_text("x", "jobs/greedy", "payload.txt")
    job = appliance.wait_job(known, 120)
    assert job["status"] == "FAULTED" and "more than requests.memory (50 MB)" in job["reason"], job
