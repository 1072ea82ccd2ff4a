"""Clara's metadata rules, pure: key/value pairs kept on a model, pipeline, job or payload.

- Keys compare case-insensitively (``casefold``); a key keeps the spelling it was added with.
- Adding a key the owner already has, or the same key twice in one request, changes nothing and
  is refused.
- A key is 1 to 128 bytes of UTF-8, a value at most 256 bytes; an owner's keys and values together
  at most 4 MiB.
- Removing a key the owner lacks changes nothing and is refused.

Each function returns the owner's whole metadata after the change, or raises ClaradError naming the
offending key; the caller stores the result in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from clarad.errors import ClaradError

MAX_KEY_BYTES = 128
MAX_VALUE_BYTES = 256
MAX_TOTAL_BYTES = 4 * 1024 * 1024


def size(items: dict[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in items.items())


def add(existing: dict[str, str], new: Iterable[tuple[str, str]], owner: str) -> dict[str, str]:
    """``existing`` with the pairs of ``new`` added, by the rules above."""
    result = dict(existing)
    held = {key.casefold(): key for key in existing}
    for key, value in new:
        if not key:
            raise ClaradError(f"{owner}: a metadata key may not be empty")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise ClaradError(f"{owner}: metadata key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise ClaradError(f"{owner}: the value of metadata key {key!r} is longer than {MAX_VALUE_BYTES} bytes")
        if key.casefold() in held:
            raise ClaradError(f"{owner}: metadata key {key!r} is already present (as {held[key.casefold()]!r}; "
                              "keys are case-insensitive); remove it first")
        held[key.casefold()] = key
        result[key] = value
    if size(result) > MAX_TOTAL_BYTES:
        raise ClaradError(f"{owner}: metadata would take {size(result)} bytes; at most {MAX_TOTAL_BYTES} are kept")
    return result


def remove(existing: dict[str, str], keys: Iterable[str], owner: str) -> dict[str, str]:
    """``existing`` without ``keys`` (case-insensitive)."""
    by_folded = {key.casefold(): key for key in existing}
    result = dict(existing)
    for key in keys:
        held = by_folded.pop(key.casefold(), None)
        if held is None:
            raise ClaradError(f"{owner}: no metadata key {key!r}")
        del result[held]
    return result
