"""Parsed definitions, by content: a job's definition is parsed and checked off the loop when the
job is created, and the scheduler, which queues the job on the loop, takes that parse instead of
parsing the text again (a burst of payloads of one pipeline is parsed once). Bounded, and safe to
use from worker threads; a ``Pipeline`` handed out is shared, so it is never changed."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from clarad.pipelines.model import Pipeline
from clarad.pipelines.parse import parse_pipeline

KEPT = 256  # distinct definitions remembered, the least recently used forgotten first

_parsed: OrderedDict[bytes, Pipeline] = OrderedDict()
_lock = threading.Lock()


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def remember(text: str, pipeline: Pipeline) -> None:
    """``pipeline`` is what ``text`` parses to."""
    key = _key(text)
    with _lock:
        _parsed[key] = pipeline
        _parsed.move_to_end(key)
        while len(_parsed) > KEPT:
            _parsed.popitem(last=False)


def parsed(text: str) -> Pipeline:
    """``parse_pipeline(text)``, parsed once per distinct text (raises as it does)."""
    key = _key(text)
    with _lock:
        pipeline = _parsed.get(key)
        if pipeline is not None:
            _parsed.move_to_end(key)
            return pipeline
    pipeline = parse_pipeline(text)
    remember(text, pipeline)
    return pipeline
