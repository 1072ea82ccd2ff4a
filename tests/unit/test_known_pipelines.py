"""Parsed definitions by content: one parse per distinct text, the checked parse reused, bounded."""

from __future__ import annotations

import pytest

from clarad.errors import PipelineRejected
from clarad.ingest import checked
from clarad.pipelines import known
from tests.unit.driving import pipeline_text


def test_the_same_text_is_parsed_once_and_another_text_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[str] = []
    real = known.parse_pipeline
    monkeypatch.setattr(known, "parse_pipeline", lambda text: parses.append(text) or real(text))
    text, other = pipeline_text(["a"], name="once"), pipeline_text(["b"], name="once")
    first = known.parsed(text)
    assert known.parsed(text) is first and parses == [text]
    assert known.parsed(other).model_names == ["b"] and parses == [text, other]


def test_a_definition_checked_at_job_creation_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    text = pipeline_text(["m"], name="checked")
    pipeline, problems = checked(text, "pipeline checked", {"m"}, 0, 2, 8)
    assert problems == [] and pipeline is not None
    monkeypatch.setattr(known, "parse_pipeline", lambda text: pytest.fail("parsed again"))
    assert known.parsed(text) is pipeline


def test_a_refused_text_raises_as_parse_pipeline_does_and_is_not_remembered() -> None:
    with pytest.raises(PipelineRejected, match="operators"):
        known.parsed('{"name": "broken"}')
    with pytest.raises(PipelineRejected):
        known.parsed('{"name": "broken"}')


def test_only_the_most_recently_used_definitions_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known, "KEPT", 2)
    texts = [pipeline_text([f"m{n}"], name=f"kept{n}") for n in range(3)]
    first = known.parsed(texts[0])
    known.parsed(texts[1])
    assert known.parsed(texts[0]) is first  # used again: the newest now
    known.parsed(texts[2])  # forgets texts[1], the least recently used
    assert known.parsed(texts[0]) is first
    assert len(known._parsed) == 2 and known._key(texts[1]) not in known._parsed
