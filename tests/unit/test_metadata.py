"""Clara's metadata rules (clarad.metadata): case-insensitive keys, sizes, no silent overwrite."""

from __future__ import annotations

import pytest

from clarad import metadata
from clarad.errors import ClaradError


def test_added_keys_keep_their_spelling_and_join_the_existing_ones() -> None:
    assert metadata.add({"Owner": "a"}, [("Stage", "test")], "model m") == {"Owner": "a", "Stage": "test"}


@pytest.mark.parametrize("existing, new, reason", [
    ({"Owner": "a"}, [("OWNER", "b")], "metadata key 'OWNER' is already present (as 'Owner'"),
    ({}, [("k", "1"), ("K", "2")], "metadata key 'K' is already present (as 'k'"),
    ({}, [("", "v")], "a metadata key may not be empty"),
    ({}, [("k" * 129, "v")], "is longer than 128 bytes"),
    ({}, [("é" * 65, "v")], "is longer than 128 bytes"),  # bytes of UTF-8, not characters
    ({}, [("k", "v" * 257)], "the value of metadata key 'k' is longer than 256 bytes"),
])
def test_refused_additions_name_the_key_and_change_nothing(existing: dict[str, str], new: list[tuple[str, str]],
                                                            reason: str) -> None:
    before = dict(existing)
    with pytest.raises(ClaradError, match="^model m: ") as refused:
        metadata.add(existing, new, "model m")
    assert reason in str(refused.value)
    assert existing == before


def test_an_owner_holds_at_most_four_mebibytes() -> None:
    full = {f"key{n:06d}": "v" * 256 for n in range(metadata.MAX_TOTAL_BYTES // 265)}
    assert metadata.size(full) <= metadata.MAX_TOTAL_BYTES
    with pytest.raises(ClaradError, match="at most 4194304 are kept"):
        metadata.add(full, [("one_more", "v" * 256)], "job j")


def test_removal_is_case_insensitive_and_refuses_keys_the_owner_lacks() -> None:
    assert metadata.remove({"Owner": "a", "stage": "b"}, ["OWNER"], "p") == {"stage": "b"}
    with pytest.raises(ClaradError, match="^p: no metadata key 'gone'$"):
        metadata.remove({"Owner": "a"}, ["owner", "gone"], "p")
