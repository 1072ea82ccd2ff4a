"""The `clarad` command: `run` starts the daemon; everything else asks it over the control socket.

Formatting is pure (``format_*`` take data, return text) so it is tested without a daemon. Exit
codes: 0 success, 1 the request was refused or failed (the reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from clarad import __version__, control
from clarad.config import Settings, load_settings
from clarad.control import Command
from clarad.errors import ClaradError
from clarad.follow import follow
from clarad.logs import printable_data
from clarad.systemd import stderr_line


def _table(rows: list[list[str]], header: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _when(timestamp: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def format_status(status: dict[str, Any]) -> str:
    jobs = status["jobs"]
    lines = [
        f"clarad {status['version']} (pid {status['pid']}), up {status['uptime_seconds']:.0f} s, state in {status['state_dir']}",
        f"GPUs: {', '.join(g['name'] for g in status['gpus']) or 'none (CPU instances)'}; slots: {', '.join(status['slots'])}",
        f"tritonserver: {status['triton']}",
        f"models: {status['models']}, pipelines: {status['pipelines']}",
        "jobs: " + ", ".join(f"{k.lower()} {jobs.get(k, 0)}" for k in ("PENDING", "RUNNING", "HEALTHY", "FAULTED", "CANCELED")),
        "instances:",
    ]
    rows = [[i["id"], i["slot"], i["state"], i["job"] or "-", i["grpc"] or "-", ", ".join(sorted(i["models"])) or "-"]
            for i in status["instances"]]
    lines.append(_indent(_table(rows, ["ID", "SLOT", "STATE", "JOB", "GRPC", "MODELS"])))
    return "\n".join(lines)


def format_reload(result: dict[str, list[str]]) -> str:
    text = "settings applied: " + (", ".join(result["applied"]) or "no change")
    if result["restart_needed"]:
        text += f"; {', '.join(result['restart_needed'])} take effect only after a restart"
    return text


def format_models(models: list[dict[str, Any]]) -> str:
    rows = [[m["name"], m["id"], m["type"], m["backend"], ",".join(map(str, m["versions"])), m["digest"][:12],
             _size(m["size"]), _when(m["added_at"])] for m in models]
    return _table(rows, ["NAME", "ID", "TYPE", "BACKEND", "VERSIONS", "REVISION", "SIZE", "ADDED"])


def format_model(model: dict[str, Any]) -> str:
    lines = [
        f"model {model['name']} (id {model['id']})",
        f"revision: {model['digest']}",
        f"type: {model['type']}, backend: {model['backend']}, versions: {','.join(map(str, model['versions']))}, "
        f"size: {_size(model['size'])}",
        f"added {_when(model['added_at'])} from {model['source']}",
        "metadata: " + (", ".join(f"{k}={v}" for k, v in model.get("metadata", {}).items()) or "-"),
        f"path: {model['path']}",
        f"needed by pipelines: {', '.join(model['pipelines']) or '-'}",
        "loaded on instances: " + (", ".join(
            f"{i['id']} ({i['state']}{'' if i['current'] else ', older revision'})" for i in model["instances"]) or "-"),
        "kept revisions (newest first):",
    ]
    rows = [[r["digest"][:12], _size(r["size"]), _when(r["added_at"]), _when(r["replaced_at"]), r["source"]]
            for r in model["revisions"]]
    lines.append(_indent(_table(rows, ["REVISION", "SIZE", "ADDED", "REPLACED", "FROM"])))
    lines.append("measured loads (latest):")
    rows = [[c["digest"][:12] + ("" if c["digest"] == model["digest"] else " (kept)"), c["device"], str(c["loads"]),
             f"{c['load_seconds']:.2f} s", _size(c["memory_bytes"]), _when(c["measured_at"])]
            for c in model.get("costs", [])]
    lines.append(_indent(_table(rows, ["REVISION", "DEVICE", "LOADS", "TIME", "MEMORY", "MEASURED"])))
    return "\n".join(lines)


def format_pipelines(pipelines: list[dict[str, Any]]) -> str:
    return _table([[p["name"], p["id"], _when(p["added_at"])] for p in pipelines], ["NAME", "ID", "ADDED"])


def format_pipeline(pipeline: dict[str, Any]) -> str:
    def paths(entries: list[dict[str, Any]]) -> str:
        return ", ".join(":".join(filter(None, [e.get("from"), e.get("name")])) + f"@{e['path'] or '-'}"
                         for e in entries) or "-"

    lines = [f"pipeline {pipeline['name']} (id {pipeline['id']}), api-version {pipeline['api_version'] or '-'}",
             *([f"description: {pipeline['description']}"] if pipeline["description"] else []),
             f"added {_when(pipeline['added_at'])}, timeout {pipeline['timeout'] or 'default'}",
             "parameters: " + (", ".join(f"{k}={v if v is not None else '(required)'}"
                                         for k, v in pipeline["parameters"].items()) or "-"),
             f"models: {', '.join(pipeline['models']) or '-'}",
             "jobs: " + (", ".join(f"{k.lower()} {n}" for k, n in sorted(pipeline["jobs"].items())) or "none"),
             "operators:"]
    rows = [[o["name"], paths(o["input"]), paths(o["output"]), ",".join(f"{k}={v}" for k, v in o["requests"].items()),
             ",".join(o["models"]) or "-", " ".join(o["command"])] for o in pipeline["operators"]]
    lines.append(_indent(_table(rows, ["NAME", "INPUT", "OUTPUT", "REQUESTS", "MODELS", "COMMAND"])))
    return "\n".join(lines)


def format_jobs(jobs: list[dict[str, Any]]) -> str:
    rows = [[j["id"], j["pipeline"], j["name"], j["state"], j["status"] or "-", _when(j["created_at"])] for j in jobs]
    return _table(rows, ["ID", "PIPELINE", "NAME", "STATE", "STATUS", "CREATED"])


def format_job(job: dict[str, Any]) -> str:
    lines = [
        f"job {job['id']} ({job['name']}) of pipeline {job['pipeline']}",
        f"state: {job['state']} {job['status'] or ''}".rstrip(),
    ]
    if job["reason"]:
        lines.append(f"reason: {job['reason']}")
    lines += [
        f"priority: {job['priority']}, instance: {job['instance'] or '-'}",
        f"created {_when(job['created_at'])}, started {_when(job['started_at'])}, stopped {_when(job['stopped_at'])}",
        "models: " + (", ".join(f"{n}@{d[:12]}" for n, d in job["models"].items()) or "-"),
        f"directory: {job['directory']}",
        "operators:",
    ]
    rows = [[o["name"], o["state"], "-" if o["exit_code"] is None else str(o["exit_code"]), o["reason"] or ""]
            for o in job["operators"]]
    lines.append(_indent(_table(rows, ["NAME", "STATE", "EXIT", "REASON"])))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# -- commands ------------------------------------------------------------------------------------

Run = Callable[[argparse.Namespace, Settings], int]


def _ask(settings: Settings, command: Command, args: Optional[dict[str, Any]] = None) -> Any:
    return control.request(control.socket_path(settings.state_dir), command, args)


def _show(ns: argparse.Namespace, data: Any, formatter: Callable[[Any], str]) -> int:
    """JSON escapes control characters itself; the tables get every name made printable first."""
    print(json.dumps(data, indent=2, default=str) if ns.json else formatter(printable_data(data)))
    return 0


def cmd_run(ns: argparse.Namespace, settings: Settings) -> int:
    from clarad.daemon import run_daemon

    # What the unit's UMask=0027 gives, also when started by hand: nothing clarad writes (the state
    # directory, the database, job files) is readable by others, whatever the caller's umask.
    os.umask(os.umask(0) | 0o027)
    return run_daemon(settings, reload=lambda: _settings(ns))


def cmd_models_add(ns: argparse.Namespace, settings: Settings) -> int:
    result = _ask(settings, Command.MODELS_ADD, {"path": str(ns.path.resolve()), "type": ns.type})
    if ns.json:
        return _show(ns, result, str)
    print(f"model {result['name']}: " + (f"revision {result['digest'][:12]} added" if result["changed"]
                                          else f"unchanged (same content as revision {result['digest'][:12]})"))
    return 0


def cmd_models_remove(ns: argparse.Namespace, settings: Settings) -> int:
    """Remove each model named; one refused does not stop the others (exit 1 if any was)."""
    results, failed = [], 0
    for key in ns.model:
        try:
            results.append(_ask(settings, Command.MODELS_REMOVE, {"model": key, "force": ns.force}))
            if not ns.json:
                print(f"model {results[-1]['name']} removed")
        except ClaradError as exc:
            failed += 1
            print(f"clarad: {key}: {exc}", file=sys.stderr)
    if ns.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_models_download(ns: argparse.Namespace, settings: Settings) -> int:
    """Zip the live model; if it was replaced while zipping, zip it again."""
    from clarad.archives import write_zip

    for _attempt in range(3):
        model = _ask(settings, Command.MODELS_SHOW, {"model": ns.model})
        try:
            count = write_zip(Path(model["path"]), ns.output)
        except FileNotFoundError:
            continue
        if _ask(settings, Command.MODELS_SHOW, {"model": ns.model})["digest"] == model["digest"]:
            print(f"model {model['name']} revision {model['digest'][:12]}: {count} file(s) written to {ns.output}")
            return 0
    raise ClaradError(f"model {ns.model} kept changing while it was being downloaded; try again")


def cmd_logs(ns: argparse.Namespace, settings: Settings) -> int:
    job = _ask(settings, Command.JOBS_SHOW, {"id": ns.id})
    names = [ns.operator] if ns.operator else [o["name"] for o in job["operators"]]
    if ns.follow:
        logs = {name: Path(job["directory"]) / "logs" / f"{name}.log" for name in names}
        end = follow(lambda: _ask(settings, Command.JOBS_SHOW, {"id": job["id"]}), logs, sys.stdout)
        print(f"job {end['id']} stopped {end['status']}: {end['reason']}", file=sys.stderr)
        return 0
    for name in names:
        path = Path(job["directory"]) / "logs" / f"{name}.log"
        if len(names) > 1:
            print(f"==> {name} <==")
        print(path.read_text(errors="replace") if path.exists() else f"(no log: {name} has not run)", end="")
    return 0


def cmd_pipelines_validate(ns: argparse.Namespace, settings: Settings) -> int:
    """Every problem of a definition file, checked by the daemon against its repository and host."""
    try:
        text = ns.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClaradError(f"{ns.file}: {getattr(exc, 'strerror', None) or exc}") from None
    result = _ask(settings, Command.PIPELINES_VALIDATE, {"text": text, "source": ns.file.name})
    if ns.json:
        _show(ns, result, str)
    else:
        print("\n".join(result["problems"]) or f"{ns.file.name}: no problem", *result["notes"], sep="\n")
    return 1 if result["problems"] else 0


def _params(pairs: Optional[list[str]]) -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ClaradError(f"--param {pair!r}: write NAME=VALUE")
        params[name] = value
    return params


def cmd_config_check(ns: argparse.Namespace, settings: Settings) -> int:
    values = settings.model_dump(mode="json")
    print(json.dumps(values, indent=2) if ns.json else "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()))
    return 0


COMMANDS: dict[tuple[str, ...], tuple[str, Run]] = {
    ("run",): ("run the daemon in the foreground (what systemd starts)", cmd_run),
    ("status",): ("what clarad is doing: GPUs, instances, jobs", lambda ns, s: _show(ns, _ask(s, Command.STATUS), format_status)),
    ("reload",): ("read the settings again and apply them (what systemctl reload runs); fails if they are refused",
                  lambda ns, s: _show(ns, _ask(s, Command.RELOAD), format_reload)),
    ("models", "list"): ("models in the repository", lambda ns, s: _show(ns, _ask(s, Command.MODELS_LIST), format_models)),
    ("models", "show"): ("one model: revision, versions, pipelines, instances, kept revisions",
                         lambda ns, s: _show(ns, _ask(s, Command.MODELS_SHOW, {"model": ns.model}), format_model)),
    ("models", "add"): ("add a model directory or .zip/.tar.gz/.tgz archive (copied; the source stays)", cmd_models_add),
    ("models", "remove"): ("remove models (each refused while a pipeline needs it, unless --force)", cmd_models_remove),
    ("models", "rollback"): ("make a kept revision live again (default: the most recent one)",
                             lambda ns, s: _show(ns, _ask(s, Command.MODELS_ROLLBACK, {"model": ns.model, "revision": ns.revision}),
                                                 lambda r: f"model {r['name']} now at revision {r['digest'][:12]} (was {r['previous'][:12]})")),
    ("models", "download"): ("write a model as a zip file", cmd_models_download),
    ("pipelines", "list"): ("registered pipelines", lambda ns, s: _show(ns, _ask(s, Command.PIPELINES_LIST), format_pipelines)),
    ("pipelines", "show"): ("one pipeline: parameters, operators, models, its jobs",
                            lambda ns, s: _show(ns, _ask(s, Command.PIPELINES_SHOW, {"pipeline": ns.pipeline}), format_pipeline)),
    ("pipelines", "remove"): ("remove a pipeline (refused while jobs of it wait or run, unless --force)",
                              lambda ns, s: _show(ns, _ask(s, Command.PIPELINES_REMOVE, {"pipeline": ns.pipeline, "force": ns.force}),
                                                  lambda r: f"pipeline {r['name']} removed")),
    ("pipelines", "validate"): ("check a definition file without installing it: every problem", cmd_pipelines_validate),
    ("jobs", "list"): ("recent jobs, newest first",
                       lambda ns, s: _show(ns, _ask(s, Command.JOBS_LIST, {"pipeline": ns.pipeline, "state": ns.state,
                                                                          "status": ns.status, "limit": ns.limit}), format_jobs)),
    ("jobs", "show"): ("one job and its operators", lambda ns, s: _show(ns, _ask(s, Command.JOBS_SHOW, {"id": ns.id}), format_job)),
    ("jobs", "create"): ("start a job of PIPELINE over a payload file or directory (copied)",
                       lambda ns, s: _show(ns, _ask(s, Command.JOBS_CREATE, {"pipeline": ns.pipeline, "path": str(ns.path.resolve()),
                                                                       "name": ns.name, "priority": ns.priority,
                                                                       "params": _params(ns.param)}),
                                           lambda r: f"job {r['id']} created (priority {r['priority']})")),
    ("jobs", "cancel"): ("cancel a job", lambda ns, s: _show(ns, _ask(s, Command.JOBS_CANCEL, {"id": ns.id}), lambda r: f"canceling job {r['id']}")),
    ("jobs", "logs"): ("print a job's operator logs (--follow: as they grow, until the job stops)", cmd_logs),
    ("config", "check"): ("print the settings clarad would use, or why they are refused", cmd_config_check),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML settings file (default /etc/clara/clarad.toml)")
    common.add_argument("--state-dir", type=Path, help="state directory (default /var/lib/clara)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = argparse.ArgumentParser(prog="clarad", description="Clara model repository and Triton scheduler.")
    parser.add_argument("--version", action="version", version=f"clarad {__version__}")
    groups: dict[str, "argparse._SubParsersAction[argparse.ArgumentParser]"] = {}
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for words, (summary, func) in COMMANDS.items():
        if len(words) == 1:
            sub = top.add_parser(words[0], help=summary, description=summary, parents=[common])
        else:
            if words[0] not in groups:
                group = top.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="action", required=True, metavar="ACTION")
            sub = groups[words[0]].add_parser(words[1], help=summary, description=summary, parents=[common])
        sub.set_defaults(func=func)
        if words in (("jobs", "show"), ("jobs", "cancel"), ("jobs", "logs")):
            sub.add_argument("id", help="job id or a unique prefix of it")
        if words[0] == "models" and words[1] != "list":
            if words[1] == "add":
                sub.add_argument("path", type=Path, help="model directory or archive")
                sub.add_argument("-t", "--type", help="Clara's model type (tensorflow, tensorrt, pytorch, unknown): "
                                                      "refused if the model's backend says otherwise")
            elif words[1] == "remove":
                sub.add_argument("model", nargs="+", help="model names, ids, or unique id prefixes")
            else:
                sub.add_argument("model", help="model name, id, or unique id prefix")
        if words == ("models", "remove"):
            sub.add_argument("--force", action="store_true", help="remove even if pipelines need it")
        if words == ("models", "rollback"):
            sub.add_argument("revision", nargs="?", help="revision (digest prefix); default the most recent kept")
        if words == ("models", "download"):
            sub.add_argument("-o", "--output", type=Path, required=True, help="zip file to write")
        if words[0] == "pipelines" and words[1] in ("show", "remove"):
            sub.add_argument("pipeline", help="pipeline name, id, or unique id prefix")
        if words == ("pipelines", "remove"):
            sub.add_argument("--force", action="store_true", help="remove even while jobs of it wait or run")
        if words == ("pipelines", "validate"):
            sub.add_argument("file", type=Path, help="pipeline definition (.yaml)")
        if words == ("jobs", "list"):
            sub.add_argument("--pipeline", help="only jobs of this pipeline (name or id)")
            sub.add_argument("--state", choices=["pending", "running", "stopped"], type=str.lower)
            sub.add_argument("--status", choices=["healthy", "faulted", "canceled"], type=str.lower)
            sub.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
        if words == ("jobs", "create"):
            sub.add_argument("pipeline", help="pipeline name or id")
            sub.add_argument("--param", action="append", metavar="NAME=VALUE",
                             help="a value for the pipeline's parameter NAME (repeat for several)")
            sub.add_argument("path", type=Path, help="payload: a file or a directory")
            sub.add_argument("--name", help="job name (default: the payload's name)")
            sub.add_argument("-i", "--priority", default="normal", help="low, normal, high or immediate (Clara's lower/higher too)")
        if words == ("jobs", "logs"):
            sub.add_argument("operator", nargs="?", help="only this operator")
            sub.add_argument("-f", "--follow", action="store_true", help="print what is added until the job stops")
        if words == ("run",):
            sub.add_argument("--metrics-port", type=int, help="port of /metrics (0: off)")
            sub.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _settings(ns: argparse.Namespace) -> Settings:
    """The settings from every source, with this command line's flags on top."""
    return load_settings(
        ns.config, state_dir=ns.state_dir,
        metrics_port=getattr(ns, "metrics_port", None), log_level=getattr(ns, "log_level", None),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.func(ns, _settings(ns)))
    except ClaradError as exc:  # an error in the journal too, where `systemctl reload` runs this
        print(stderr_line(f"clarad: {exc}", logging.ERROR), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
