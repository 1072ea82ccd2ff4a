"""clarad.service under a real systemd: start, reload, watchdog, stop, the journal, the sandbox."""

from __future__ import annotations

import re

from tests.system.appliance import CONFIG, Appliance
from tests.waiting import wait_for

SLEEPY = """\
name: sleepy
operators:
- name: sleeps
  command: ["/opt/clarad/bin/python", "-c", "import time; time.sleep(600)"]
  models: [{name: affine}]
"""


def test_the_unit_reports_ready_and_runs_as_clara(appliance: Appliance) -> None:
    shown = appliance.show("ActiveState", "SubState", "StatusText", "MainPID", "Type", "NotifyAccess")
    assert (shown["ActiveState"], shown["SubState"], shown["StatusText"]) == ("active", "running", "running")
    assert (shown["Type"], shown["NotifyAccess"]) == ("notify", "main")
    assert f"{shown['MainPID']} " in "\n".join(appliance.processes("clara")) + " "


def test_reload_waits_for_clarad_and_fails_when_it_refuses_the_settings(appliance: Appliance) -> None:
    pid = appliance.show("MainPID")["MainPID"]
    appliance.m.write(CONFIG, "job_timeout_seconds = 123.0\nmetrics_port = 9465\n")
    appliance.systemctl("reload", "clarad")
    settings = appliance.clarad("status")["settings"]  # no waiting: applied before reload returned
    assert (settings["job_timeout_seconds"], settings["metrics_port"]) == (123.0, 9464)

    appliance.m.write(CONFIG, "job_timeout_seconds = -5\n")
    refused = appliance.m.run("systemctl", "reload", "clarad", check=False)
    # systemctl can only know this if the reload waited for clarad's answer
    assert refused.returncode != 0, "a refused reload succeeded"
    appliance.m.write(CONFIG, "job_timeout_seconds = 456.0\n")  # readable again, for `clarad status` itself
    assert appliance.clarad("status")["settings"]["job_timeout_seconds"] == 123.0
    assert appliance.show("ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": pid}
    # the reason, at error priority, from `clarad reload` (it reads the file too, and stops there)
    said = [entry["MESSAGE"] for entry in appliance.journal("-p", "err", "--since", "-2min")]
    assert any(line.startswith("clarad: job_timeout_seconds") for line in said), said


def test_warnings_reach_the_journal_at_their_priority_and_a_name_cannot_forge_a_line(appliance: Appliance) -> None:
    pid = appliance.show("MainPID")["MainPID"]
    appliance.drop_text("operators: [", "pipelines", "bad\n<3>clarad: forged.yaml")
    wait_for(lambda: [e for e in appliance.journal("-p", "warning", f"_PID={pid}") if "forged" in e["MESSAGE"]],
             60, "the rejection in the journal")
    warnings = [e for e in appliance.journal("-p", "warning", f"_PID={pid}") if "forged" in e["MESSAGE"]]
    assert len(warnings) == 1, warnings
    assert warnings[0]["PRIORITY"] == "4"
    assert warnings[0]["MESSAGE"].startswith("WARNING clarad.ingest: rejected pipelines/bad\\n<3>clarad: forged.yaml")
    everything = appliance.journal(f"_PID={pid}")
    assert not [e for e in everything if e["MESSAGE"].startswith(("<3>clarad: forged", "clarad: forged"))]
    info = [e for e in everything if e["MESSAGE"].startswith("INFO clarad: ready")]
    assert [e["PRIORITY"] for e in info] == ["6"]
    assert not [e for e in appliance.journal("-p", "warning", f"_PID={pid}") if e["MESSAGE"].startswith("INFO")]


def test_a_frozen_clarad_is_restarted_by_the_watchdog(appliance: Appliance) -> None:
    before = appliance.show("MainPID", "NRestarts")
    appliance.systemctl("kill", "--signal=SIGSTOP", "--kill-whom=main", "clarad")
    # WatchdogSec=30, then SIGABRT, then RestartSec=5 and a fresh start
    def restarted() -> dict[str, str]:
        shown = appliance.show("MainPID", "NRestarts", "ActiveState")
        fresh = shown["MainPID"] not in ("0", before["MainPID"]) and shown["ActiveState"] == "active"
        return shown if fresh else {}

    after = wait_for(restarted, 120, "systemd to restart the frozen clarad")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    lines = [entry["MESSAGE"] for entry in appliance.journal("--since", "-3min")]
    assert any("Watchdog timeout" in line for line in lines), lines[-20:]
    assert not appliance.m.run("test", "-d", f"/proc/{before['MainPID']}", check=False).returncode == 0
    assert appliance.clarad("status")["pid"] == int(after["MainPID"])


def test_stop_leaves_no_process_of_user_clara(appliance: Appliance) -> None:
    appliance.ensure_model("/srv/clarad-test/demo/models/affine", "affine")
    appliance.ensure_pipeline(SLEEPY, "sleepy")
    known = appliance.job_ids()
    appliance.drop_text("x", "jobs/sleepy", "payload.txt")
    wait_for(lambda: any("time.sleep(600)" in p for p in appliance.processes()), 120, "the operator to run")
    running = appliance.processes()
    assert any("tritonserver" in p for p in running) and any("triton_python_backend_stub" in p for p in running)
    appliance.systemctl("stop", "clarad")
    assert appliance.processes() == []
    appliance.systemctl("start", "clarad")
    job = appliance.clarad("jobs", "show", next(iter(appliance.job_ids() - known)))
    assert (job["state"], job["status"]) == ("STOPPED", "CANCELED"), job


def test_the_sandbox_rates_2_0_or_better(appliance: Appliance) -> None:
    report = appliance.m.run("systemd-analyze", "security", "--no-pager", "clarad").stdout
    rating = re.search(r"Overall exposure level for clarad.service: ([0-9.]+)", report)
    assert rating, report
    exposure = float(rating[1])
    assert exposure <= 2.0, report
