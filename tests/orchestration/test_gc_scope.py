"""young_collections_only: full garbage collections skip the objects alive before the block,
the process's own choices stay, and cycles made inside are still collected afterwards."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from lester_dagster.orchestration.gc_scope import young_collections_only


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_objects_alive_before_are_frozen_for_the_block_only() -> None:
    assert gc.get_freeze_count() == 0
    before = object.__new__(_Node)  # a tracked container made before the block
    with young_collections_only():
        assert gc.get_freeze_count() > 0
        assert all(o is not before for o in gc.get_objects())  # not seen by collections
    assert gc.get_freeze_count() == 0
    assert any(o is before for o in gc.get_objects())


def test_a_cycle_made_inside_is_collected_afterwards() -> None:
    with young_collections_only():
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
        gone = weakref.ref(a)
        del a, b
    gc.collect()
    assert gone() is None


def test_a_process_that_froze_or_disabled_collection_is_left_as_it_is() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with young_collections_only():
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == frozen  # not unfrozen by the block
    gc.unfreeze()
    gc.disable()
    with young_collections_only():
        assert gc.get_freeze_count() == 0 and not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_in_the_block_unfreezes() -> None:
    with pytest.raises(RuntimeError, match="inside"), young_collections_only():
        raise RuntimeError("inside")
    assert gc.get_freeze_count() == 0
