"""What the schema cannot check: names, references, paths, the DAG, and what the host and the
repository have. Pure, and linear in the size of the pipeline (a 2,000-operator chain is as quick
per operator as a short one). Every problem is collected; PipelineRejected carries them all.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Collection
from typing import Optional, Union

from clarad.containers.engine import NO_RUNTIME
from clarad.errors import PipelineRejected
from clarad.pipelines.model import Input, Operator, Output, Pipeline

# Directories of the host an operator's own program needs: a declared path may not hide one of
# them inside the operator's mount namespace.
SYSTEM_DIRS = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "run",
                         "sbin", "sys", "usr", "var"})


def topological_order(pipeline: Pipeline) -> list[str]:
    """Operator names so that each comes after those it reads from (Kahn's algorithm, in pipeline
    order among equals); raises PipelineRejected naming a cycle."""
    waiting = {op.name: len(op.upstream) for op in pipeline.operators}
    readers: dict[str, list[str]] = {op.name: [] for op in pipeline.operators}
    for op in pipeline.operators:
        for up in op.upstream:
            readers.setdefault(up, []).append(op.name)
    ready = deque(name for name, count in waiting.items() if count == 0)
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for reader in readers.get(name, ()):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if len(order) < len(waiting):
        cycle = _a_cycle(pipeline, {name for name, count in waiting.items() if count > 0})
        raise PipelineRejected(f"{pipeline.source}: operators form a cycle: {' -> '.join(sorted(cycle))}")
    return order


def _a_cycle(pipeline: Pipeline, left: set[str]) -> list[str]:
    """One cycle among the operators Kahn's algorithm could not order: follow 'reads from' until a
    name comes back (each step stays among ``left``, which only holds operators on or after a cycle)."""
    start = min(left)
    seen: dict[str, int] = {}
    path: list[str] = []
    name = start
    while name not in seen:
        seen[name] = len(path)
        path.append(name)
        name = min((up for up in pipeline.operator(name).upstream if up in left), default=start)
    return path[seen[name]:]


def check_pipeline(pipeline: Pipeline, known_models: Collection[str], gpus: int, cpus: Optional[int] = None,
                   max_models: Optional[int] = None, runtime: Optional[str] = None) -> None:
    """Check what the schema cannot: names, references, paths, the DAG, the models it needs, and the
    ``gpus`` and ``cpus`` this host has for its operators, that one operator's models fit the
    ``max_models`` of one instance, and that a container ``runtime`` (its name; None: there is none)
    runs the operators with an image. Raises PipelineRejected with every problem."""
    src = pipeline.source
    problems: list[str] = []
    seen: set[str] = set()
    by_name: dict[str, Operator] = {}
    for op in pipeline.operators:
        if op.name.lower() in seen:
            problems.append(f'{src}: operator "{op.name}": name used twice (names are case-insensitive)')
        seen.add(op.name.lower())
        by_name.setdefault(op.name, op)
    for op in pipeline.operators:
        problems += [f'{src}: operator "{op.name}": {problem}'
                     for problem in _operator(op, by_name, gpus, cpus) + _container(op, runtime) + _services(op, runtime)]
        wanted = len(set(op.model_names))  # a job's models may be split over instances; one operator's may not
        if max_models is not None and wanted > max_models:
            problems.append(f'{src}: operator "{op.name}": asks for {wanted} models; one instance may hold at '
                            f"most {max_models} (max_models_per_instance)")
    if not problems:
        try:
            topological_order(pipeline)
        except PipelineRejected as exc:
            problems.append(str(exc))
    missing = [name for name in pipeline.model_names if name not in known_models]
    if missing:
        users = [op.name for op in pipeline.operators if set(op.model_names) & set(missing)]
        problems.append(f"{src}: model(s) {', '.join(missing)} asked for by operator(s) {', '.join(users)} "
                        "are not in the model repository: add the model first")
    if problems:
        raise PipelineRejected(problems[0], problems=problems)


def _operator(op: Operator, by_name: dict[str, Operator], gpus: int, cpus: Optional[int]) -> list[str]:
    problems: list[str] = []
    if not op.argv and op.image is None:
        problems.append("command: none given (set container.command, or command for a host command)")
    elif any("\0" in arg for arg in op.argv):
        problems.append("command: a NUL character cannot be passed to a program")
    if op.command and op.container is not None and op.container.command:
        problems.append("both command and container.command: give one (command is clarad's name for a host command)")
    if op.requests.gpu > gpus:
        problems.append(f"requests.gpu is {op.requests.gpu}, but this host has {gpus} GPU(s) clarad may use "
                        "(see use_gpus)")
    if cpus is not None and (op.requests.cpu or 0) > cpus:
        problems.append(f"requests.cpu is {op.requests.cpu}, but this host has {cpus} CPU(s) clarad may use")
    out_names = [out.name for out in op.output if out.name]
    if len(out_names) != len(set(out_names)):
        problems.append("output names must be unique")
    if len(op.output) > 1 and len(out_names) != len(op.output):
        problems.append("with several outputs each needs a name")
    for index, inp in enumerate(op.input):
        problems += [f"input[{index}]{p}" for p in _input(op, inp, by_name)]
    problems += _paths(op)
    if len(set(op.model_names)) != len(op.model_names):
        problems.append("a model is listed twice under models")
    if op.triton_services and not op.model_names:
        index = op.services.index(op.triton_services[0])
        problems.append(f"services[{index}]: {op.services[index].name} serves no model clarad can name: list the "
                        "models the operator needs under models (or --load-model=NAME in the service's command)")
    return problems


def _services(op: Operator, runtime: Optional[str]) -> list[str]:
    """A Triton service is clarad's instance; any other is a container, which needs the runtime and
    the ports the operator reaches it at."""
    problems: list[str] = []
    ports: set[int] = set()
    for index, service in enumerate(op.services):
        where = f"services[{index}]"
        if service.is_triton:
            if service.variables:
                problems.append(f"{where}.variables: variables of the Triton container; the job's instance is "
                                "clarad's tritonserver, configured by clarad")
            continue
        if runtime is None:
            problems.append(f"{where}.container.image: {service.container.image!r} is not a Triton image: it runs "
                            f"as a container, and {NO_RUNTIME}")
        problems += image_problems(f"{where}.container", service.container.image, service.container.tag)
        if service.requests.gpu:
            problems.append(f"{where}.requests.gpu: GPUs for a service are not supported (its operator's are)")
        for number, connection in enumerate(service.connections.http):
            if connection.port is None:
                problems.append(f"{where}.connections.http[{number}].port: needed: the port {service.name} listens on")
            elif connection.port in ports:
                problems.append(f"{where}.connections.http[{number}].port: {connection.port} is another service's "
                                "too (services share the host's network)")
            else:
                ports.add(connection.port)
    return problems


def _container(op: Operator, runtime: Optional[str]) -> list[str]:
    """What keeps an operator with an image from running as a container."""
    if op.image is None:
        tagged = op.container is not None and op.container.tag is not None
        return ["container.tag: the tag of an image, but container.image is not given"] if tagged else []
    if runtime is None:
        return [f"container.image: {NO_RUNTIME}"]
    assert op.container is not None
    problems = [f"{where}: a container operator needs a path for each input and output but the first of each "
                "(at /input, /output)" for where in missing_paths(op)]
    if op.command:
        problems.append("command: clarad's host command cannot run in container.image: give container.command")
    last = op.image.rsplit("/", 1)[-1]
    if op.container.tag is not None and (":" in last or "@" in last):
        problems.append(f"container.tag: container.image {op.image!r} names its tag or digest already")
    problems += image_problems("container", op.image, op.container.tag)
    return problems


# An OCI image reference as the runtimes take it (name, optional :tag or @digest), and a tag alone. It
# starts with a letter or digit: text starting with "-" would be read by `podman run` as an option.
IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]*(@[A-Za-z0-9:+._-]+)?")  # host:port/path:tag@digest
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def image_problems(where: str, image: Optional[str], tag: object) -> list[str]:
    problems = []
    if not image or not IMAGE_REFERENCE.fullmatch(image):
        problems.append(f"{where}.image: {image!r} is not an image name (name[:tag], starting with a letter or digit)")
    if tag is not None and not IMAGE_TAG.fullmatch(str(tag)):
        problems.append(f"{where}.tag: {tag!r} is not an image tag (letters, digits, _ . -, not first . or -)")
    return problems


def missing_paths(op: Operator) -> list[str]:
    """Inputs and outputs of a container operator that would have no path inside it: only the first
    of each may go without, taking Clara's default (``Operator.with_default_paths``)."""
    seen = op.with_default_paths()
    missing = [f"input[{i}].path" for i, entry in enumerate(seen.input) if entry.path is None]
    return missing + [f"output[{i}].path" for i, entry in enumerate(seen.output) if entry.path is None]


def _input(op: Operator, inp: Input, by_name: dict[str, Operator]) -> list[str]:
    if inp.from_ is None:
        return [" has a name but no from"] if inp.name is not None else []
    if inp.from_ == op.name:
        return [" reads from the operator itself"]
    source = by_name.get(inp.from_)
    if source is None:
        return [f' from "{inp.from_}": no such operator in this pipeline']
    outputs = {out.name: out for out in source.output}
    if inp.name is not None and inp.name not in outputs:
        return [f': operator "{inp.from_}" has no output named "{inp.name}"']
    upstream = outputs.get(inp.name)
    if upstream is not None and inp.element_type and upstream.element_type and inp.element_type != upstream.element_type:
        return [f": element-type {inp.element_type!r} does not match {upstream.element_type!r} of operator "
                f'"{inp.from_}"']
    return []


def _paths(op: Operator) -> list[str]:
    """Declared paths: absolute, plain (no '..', no ':'), not over the host's system directories, one
    directory each."""
    problems: list[str] = []
    used: dict[str, str] = {}
    declared: list[tuple[str, Union[Input, Output]]] = [
        *[(f"input[{i}].path", inp) for i, inp in enumerate(op.input)],
        *[(f"output[{i}].path", out) for i, out in enumerate(op.output)]]
    for where, entry in declared:
        path = entry.path
        if path is None:
            continue
        problem = path_problem(path)
        if problem is None and posixpath.normpath(path) in used:
            problem = f"{path!r} is also {used[posixpath.normpath(path)]}: each directory needs its own path"
        if problem is not None:
            problems.append(f"{where}: {problem}")
        used.setdefault(posixpath.normpath(path), where)
    return problems


def path_problem(path: str) -> Optional[str]:
    """Why a declared ``path`` cannot be where an operator sees a directory, or None."""
    parts = path.split("/")
    if not path.startswith("/") or path == "/":
        return f"{path!r} must be an absolute path below / (as /input)"
    if ".." in parts or "." in parts or ":" in path or "\0" in path:
        return f"{path!r} may not hold '..', '.', ':' or NUL"
    if parts[1] in SYSTEM_DIRS:
        return f"{path!r} is inside /{parts[1]}, which the operator's own program needs: choose another directory"
    return None
