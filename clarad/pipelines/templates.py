"""Clara's pipeline templates: ``${{ name }}`` placeholders, resolved when a job is created. Pure.

A pipeline's ``parameters`` declare the placeholders it may use, each with its default; an
operator's own ``parameters`` add defaults for its part of the definition. A job's arguments
(``clarad jobs create --param NAME=VALUE``) win over both; an argument the definition does not
declare is refused, as Clara refused it. Values are strings (Clara: "use of non-string values is
undefined"): numbers and booleans are written as YAML reads them. A parameter declared without a
value must be given by each job. Placeholders are replaced in the loaded definition's strings, never
in its text, so a value cannot add keys or structure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from clarad.pipelines.model import NAME_RE, env_value

PLACEHOLDER = re.compile(r"\$\{\{\s*([^{}\s]*)\s*\}\}")


class Unresolved(Exception):
    """Problems of a template (each a line naming where); ``str`` is the first."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


def declared(data: Mapping[str, Any]) -> dict[str, Optional[str]]:
    """Every parameter the definition declares, with its default (None: each job must give it)."""
    names: dict[str, Optional[str]] = {}
    for scope in [data, *[op for op in _operators(data)]]:
        for key, value in _parameters(scope).items():
            names.setdefault(key, value)
    return names


def resolve(data: dict[str, Any], args: Mapping[str, str], source: str,
            stand_in: bool = False) -> dict[str, Any]:
    """``data`` with every placeholder replaced; raises Unresolved naming each one left, each
    argument the definition does not declare and each parameter that is not a name or a scalar.

    ``stand_in``: a parameter without a default is replaced by its own name (checking a definition
    before any job gives it a value)."""
    problems: list[str] = []
    scopes = [("parameters", data), *[(f'operator "{op.get("name")}": parameters', op) for op in _operators(data)]]
    for where, scope in scopes:
        for key, value in (scope.get("parameters") or {}).items() if isinstance(scope.get("parameters"), dict) else ():
            if not isinstance(key, str) or not NAME_RE.match(key):
                problems.append(f"{source}: {where}: {key!r} is not a name (1-255 of A-Z a-z 0-9 - _)")
            elif value is not None and not isinstance(value, (str, int, float, bool)):
                problems.append(f"{source}: {where}.{key}: a parameter's value is a string, not a list or mapping")
    problems += [f"argument {name!r}: a NUL character cannot be passed to a program" for name, value in args.items()
                 if "\0" in value]
    unknown = sorted(set(args) - set(declared(data)))
    problems += [f"argument {name!r}: the pipeline declares no parameter {name!r} "
                 f"(declared: {', '.join(sorted(declared(data))) or 'none'})" for name in unknown]
    top = {**_parameters(data), **args}
    resolved: dict[str, Any] = {}
    for key, value in data.items():
        if key == "operators" and isinstance(value, list):
            resolved[key] = [_operator(op, top, args, source, problems, stand_in) for op in value]
        elif key == "parameters":
            resolved[key] = value
        else:
            resolved[key] = _replace(value, top, source, key, problems, stand_in)
    if problems:
        raise Unresolved(problems)
    if isinstance(resolved.get("parameters"), dict):  # the job's record of the values it ran with
        resolved["parameters"] = {k: top.get(k) for k in resolved["parameters"]}
    return resolved


def _operator(op: Any, top: Mapping[str, Optional[str]], args: Mapping[str, str], source: str,
              problems: list[str], stand_in: bool) -> Any:
    if not isinstance(op, dict):
        return op
    values = {**top, **_parameters(op), **args}
    where = f'operator "{op.get("name")}": '
    return {key: value if key == "parameters" else _replace(value, values, source, where + str(key), problems,
                                                            stand_in)
            for key, value in op.items()}


def _replace(value: Any, values: Mapping[str, Optional[str]], source: str, where: str, problems: list[str],
             stand_in: bool) -> Any:
    if isinstance(value, dict):
        return {k: _replace(v, values, source, f"{where}.{k}", problems, stand_in) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, values, source, f"{where}[{i}]", problems, stand_in) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${{" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        given = values.get(name)
        if given is not None:
            return given
        if name in values and stand_in:
            return name
        if name in values:
            problems.append(f"{source}: {where}: parameter {name!r} has no value: give it when creating the job "
                            f"(--param {name}=VALUE) or a default in parameters")
        else:
            problems.append(f"{source}: {where}: unresolved reference ${{{{ {name} }}}}: "
                            f"declare {name!r} under parameters")
        return match.group(0)

    replaced = PLACEHOLDER.sub(one, value)
    if "${{" in PLACEHOLDER.sub("", value):
        problems.append(f"{source}: {where}: a malformed placeholder in {value!r}: write ${{{{ name }}}}")
    return replaced


def _operators(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    ops = data.get("operators")
    return [op for op in ops if isinstance(op, dict)] if isinstance(ops, list) else []


def _parameters(scope: Mapping[str, Any]) -> dict[str, Optional[str]]:
    params = scope.get("parameters")
    if not isinstance(params, dict):
        return {}
    return {str(k): None if v is None else env_value(v) for k, v in params.items()
            if isinstance(v, (str, int, float, bool)) or v is None}
