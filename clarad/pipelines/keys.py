"""Every key of Clara's pipeline definition language (api-version 0.2.0 to 0.8.x), and what clarad
does with it. Pure.

``KEYS`` is the one table: each key is applied, refused with its reason, set aside with a log line
(Kubernetes-only keys), or applied only for some values (``check`` says which). docs/clara-pipelines.md
shows the same table, and a test keeps the two equal. ``sweep`` walks a loaded definition against
it: it returns every problem (a refused or unknown key, each naming the file, the operator and the
key), the notes for the log, and the definition without the keys it set aside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

APPLIED, REFUSED, IGNORED, DEPENDS = "applied", "refused", "ignored", "depends"


@dataclass(frozen=True)
class Key:
    status: str
    why: str
    fields: Optional[dict[str, "Key"]] = None  # a mapping: its keys
    items: Optional[dict[str, "Key"]] = None  # a list of mappings: the keys of each item
    check: Optional[Callable[[Any], Optional[str]]] = None  # for DEPENDS: the problem with this value, or None
    free: bool = False  # a mapping whose keys are the author's (variables, parameters)


def _stream_only(value: Any) -> Optional[str]:
    if value == "stream":
        return None
    return (f"type {value!r} is a shared-memory (FastIO) type, which needs Clara's pipeline driver; clarad "
            "passes data between operators on disk only: use type: stream with a path")


def _versions(value: Any) -> Optional[str]:
    parts = str(value).split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return f"{value!r} is not a version (0.2.0 to 0.8.x)"
    if (major, minor) < (0, 2) or (major, minor) > (0, 8):
        return f"{value!r}: clarad reads Clara's api-version 0.2.0 to 0.8.x"
    return None


NAME = Key(APPLIED, "the name; 1-255 of A-Z a-z 0-9 - _, case-insensitive, unique where Clara says")
VERSION = Key(DEPENDS, "checked: 0.2.0 to 0.8.x; every key below is read the same way in each", check=_versions)
STREAM = {
    "name": NAME,
    "path": Key(APPLIED, "where the operator sees the directory: through its own mount namespace (bwrap), "
                         "else the real directory is given in the variables"),
    "type": Key(DEPENDS, "api-version 0.5.0: stream (on disk) is applied; array, string and the primitives are "
                         "shared memory (FastIO), refused", check=_stream_only),
    "element-type": Key(APPLIED, "api-version 0.5.0: checked to match the upstream output's"),
    "shape": Key(REFUSED, "api-version 0.5.0: the shape of a shared-memory array; clarad passes data on disk only"),
}
SERVICE = {
    "name": Key(APPLIED, "the service's name, in log lines"),
    "description": Key(APPLIED, "shown by pipelines show"),
    "api-version": VERSION,
    "container": Key(APPLIED, "a Triton service's, or the image of one run as a container", fields={
        "image": Key(APPLIED, "a Triton/TRTIS image is mapped onto the job's leased Triton instance; any other runs "
                              "as a container beside the operator (needs the container runtime)"),
        "tag": Key(APPLIED, "the image's tag (latest when absent); a Triton service's is set aside with a log line: "
                            "the job's instance is clarad's own tritonserver, whatever the tag"),
        "command": Key(APPLIED, "Triton: --load-model=NAME names the models it serves when the operator lists none; "
                                "other services: replaces the image's entrypoint"),
    }),
    "connections": Key(APPLIED, "how the operator reaches the service", fields={
        "http": Key(APPLIED, "each name becomes a variable of the operator holding the service's host:port",
                    items={
            "name": Key(APPLIED, "the variable's name"),
            "port": Key(APPLIED, "Triton: 8001 (its gRPC port) gives the gRPC endpoint, any other the HTTP one; "
                                 "other services: the port it listens on (on the host's network)"),
        }),
    }),
    "requests": Key(APPLIED, "other services: memory and cpu as the container's limits (gpu refused); a Triton "
                             "service's is set aside with a log line (the job's instance is clarad's)"),
    "variables": Key(APPLIED, "other services: the container's environment; refused for a Triton service (the "
                              "job's instance is clarad's tritonserver, configured by clarad)", free=True),
    "import": Key(REFUSED, "imports a service from another file (document linking): a drop is one file; "
                           "write the service in place"),
}
OPERATOR = {
    "name": NAME,
    "description": Key(APPLIED, "shown by pipelines show"),
    "api-version": VERSION,
    "container": Key(APPLIED, "the operator's program", fields={
        "image": Key(APPLIED, "run as a container from the local image store with the container runtime "
                              "(operator_runtime: podman or docker); refused when there is none"),
        "tag": Key(APPLIED, "the image's tag; latest when absent"),
        "command": Key(APPLIED, "with an image: replaces the image's entrypoint; without: run as a host process; "
                                "$(NAME) expanded from its environment"),
        "variables": Key(APPLIED, "environment variables (the operator's own variables win)", free=True),
    }),
    "command": Key(APPLIED, "clarad's host command, in place of container.command (not both)"),
    "input": Key(APPLIED, "readable directories: the payload, or another operator's output", items={
        "from": Key(APPLIED, "the operator whose output this is; it must complete first"), **STREAM}),
    "output": Key(APPLIED, "writable directories, jobs/<id>/operators/<op>[/<name>]", items=STREAM),
    "requests": Key(APPLIED, "what the operator needs", fields={
        "cpu": Key(APPLIED, "a whole number of CPUs the operator is pinned to (CPU affinity); refused when more "
                            "than the host has"),
        "gpu": Key(APPLIED, "GPUs given through CUDA_VISIBLE_DEVICES, held by the job from start to end"),
        "memory": Key(APPLIED, "MB: an operator whose processes use more resident memory is stopped"),
    }),
    "models": Key(APPLIED, "loaded and ready on the job's Triton instance before the first operator starts",
                  items={"name": Key(APPLIED, "a model of the repository")}),
    "variables": Key(APPLIED, "environment variables", free=True),
    "parameters": Key(APPLIED, "template defaults for ${{ name }} in this operator", free=True),
    "services": Key(APPLIED, "a Triton service is mapped onto the job's instance; any other runs as a container "
                             "beside the operator", items=SERVICE),
    "import": Key(REFUSED, "imports an operator from another file (api-version 0.2.0 document linking): a drop "
                           "is one file; write the operator in place"),
}
KEYS: dict[str, Key] = {
    "api-version": VERSION,
    "name": NAME,
    "description": Key(APPLIED, "shown by pipelines show"),
    "operators": Key(APPLIED, "the DAG", items=OPERATOR),
    "parameters": Key(APPLIED, "template defaults for ${{ name }}, overridden per job", free=True),
    "timeout": Key(APPLIED, "seconds (clarad): the job's timeout, at most job_timeout_max_seconds"),
    "orchestrator": Key(IGNORED, "Kubernetes-era choice of engine (Clara or Argo); one host has one"),
    "pull-secrets": Key(IGNORED, "Kubernetes image pull secrets; no images are pulled"),
}


@dataclass
class Sweep:
    source: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # where each problem is, without the file

    def where(self, operator: Optional[str], path: str) -> str:
        who = f'operator "{operator}": ' if operator else ""
        self.paths.append(f"{who}{path}")
        return f"{self.source}: {who}{path}"


def sweep(data: dict[str, Any], source: str) -> tuple[dict[str, Any], Sweep]:
    """The definition without the keys set aside, and every problem and note found on the way."""
    result = Sweep(source)
    return _mapping(data, KEYS, "", None, result), result


def _mapping(data: dict[str, Any], spec: dict[str, Key], prefix: str, operator: Optional[str],
             result: Sweep) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        rule = spec.get(key) if isinstance(key, str) else None
        if rule is None:
            known = ", ".join(spec)
            result.problems.append(f"{result.where(operator, path)}: unknown key (Clara's keys here: {known})")
            continue
        if rule.status == REFUSED:
            result.problems.append(f"{result.where(operator, path)}: {rule.why}")
            continue
        if rule.status == IGNORED:
            result.notes.append(f"{result.where(operator, path)} set aside: {rule.why}")
            continue
        problem = rule.check(value) if rule.check is not None else None
        if problem is not None:
            result.problems.append(f"{result.where(operator, path)}: {problem}")
            continue
        kept[key] = _value(value, rule, path, operator, result)
    return kept


def _value(value: Any, rule: Key, path: str, operator: Optional[str], result: Sweep) -> Any:
    if rule.fields is not None and isinstance(value, dict):
        return _mapping(value, rule.fields, f"{path}.", operator, result)
    if rule.items is not None and isinstance(value, list):
        kept = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                kept.append(item)  # the schema says what is wrong with it
                continue
            who = operator
            if rule.items is OPERATOR:  # what follows is about this operator
                who = str(item["name"]) if isinstance(item.get("name"), str) else f"operators[{index}]"
                kept.append(_mapping(item, rule.items, "", who, result))
            else:
                kept.append(_mapping(item, rule.items, f"{path}[{index}].", who, result))
        return kept
    return value


def table() -> list[tuple[str, str, str]]:
    """(key path, status, why) for every key, for the documentation."""
    rows: list[tuple[str, str, str]] = []

    def walk(spec: dict[str, Key], prefix: str) -> None:
        for key, rule in spec.items():
            rows.append((f"{prefix}{key}", rule.status, rule.why))
            if rule.fields is not None:
                walk(rule.fields, f"{prefix}{key}.")
            if rule.items is not None:
                walk(rule.items, f"{prefix}{key}[].")

    walk(KEYS, "")
    return rows
