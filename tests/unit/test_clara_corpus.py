"""NVIDIA's public pipeline files (tests/corpus/pipelines/clara/): what clarad does with each is
what the table "The corpus" in docs/clara-pipelines.md says, as published without and with a
container runtime, and with its images replaced by host commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from clarad.pipelines import validate

ROOT = Path(__file__).resolve().parents[2]
CLARA = ROOT / "tests" / "corpus" / "pipelines" / "clara"


def documented() -> dict[str, tuple[list[str], list[str], list[str]]]:
    text = (ROOT / "docs" / "clara-pipelines.md").read_text(encoding="utf-8")
    block = text.split("<!-- corpus -->", 1)[1].split("<!-- end corpus -->", 1)[0]
    rows = {}
    for match in re.finditer(r"^\| `([^`]+)` \| (.*) \| (.*) \| (.*) \|$", block, re.M):
        rows[match.group(1)] = (re.findall(r"`([^`]+)`", match.group(2)), re.findall(r"`([^`]+)`", match.group(3)),
                                re.findall(r"`([^`]+)`", match.group(4)))
    return rows


def refused_keys(problems: list[str]) -> list[str]:
    """The key each problem names (after the file and the operator)."""
    keys = set()
    for problem in problems:
        rest = re.sub(r'^operator "[^"]*": ', "", problem.split(": ", 1)[1])
        keys.add(re.match(r"[\w.\[\]-]+", rest).group(0))  # type: ignore[union-attr]
    return sorted(keys)


def with_host_commands(text: str) -> str:
    """The definition with only its images replaced: image and tag gone, a command where there was none."""
    data = yaml.safe_load(text)
    for op in data["operators"]:
        container = op.get("container")
        if isinstance(container, dict) and "image" in container:
            del container["image"]
            container.pop("tag", None)
            container.setdefault("command", ["true"])
    return yaml.safe_dump(data)


def test_every_corpus_file_is_in_the_table_and_the_corpus_is_not_empty() -> None:
    files = sorted(path.name for path in CLARA.glob("*.yaml"))
    assert len(files) >= 5
    assert sorted(documented()) == files


@pytest.mark.parametrize("name", sorted(path.name for path in CLARA.glob("*.yaml")))
def test_a_real_pipeline_as_published_is_refused_for_the_keys_the_table_names(name: str) -> None:
    text = (CLARA / name).read_text(encoding="utf-8")
    pipeline, problems = validate(text, name, set(), 0, 2)
    assert pipeline is None
    assert all(problem.startswith(f"{name}: ") for problem in problems)
    assert refused_keys(problems) == documented()[name][0]


@pytest.mark.parametrize("name", sorted(path.name for path in CLARA.glob("*.yaml")))
def test_a_real_pipeline_as_published_with_a_container_runtime_is_accepted_or_refused_as_the_table_says(
        name: str) -> None:
    text = (CLARA / name).read_text(encoding="utf-8")
    models = {m["name"] for op in yaml.safe_load(text)["operators"] for m in op.get("models", [])}
    pipeline, problems = validate(text, name, models, 1, 2, runtime="podman")
    expected = documented()[name][1]
    assert refused_keys(problems) == expected
    assert (pipeline is not None) == (expected == [])


@pytest.mark.parametrize("name", sorted(path.name for path in CLARA.glob("*.yaml")))
def test_a_real_pipeline_with_host_commands_is_accepted_or_refused_as_the_table_says(name: str) -> None:
    text = with_host_commands((CLARA / name).read_text(encoding="utf-8"))
    models = {m["name"] for op in yaml.safe_load(text)["operators"] for m in op.get("models", [])}
    pipeline, problems = validate(text, name, models, 1, 2)
    expected = documented()[name][2]
    assert refused_keys(problems) == expected
    assert (pipeline is not None) == (expected == [])
