"""Keep Python's full garbage collections out of a deletion run.

A full (generation 2) collection walks every container object the process tracks. After
importing Dagster, pandas and scikit-learn that is ~250k objects, ~0.1 s per collection on
our 2-core machine, and a run allocates enough to trigger one every second request or so
(measured at 1M customers: 0.14-0.18 s inside the request). None of those import-time objects
becomes garbage during a run.

:func:`young_collections_only` moves the objects alive when the run starts to the
collector's permanent generation (:func:`gc.freeze`) and gives them back at its end
(:func:`gc.unfreeze`): collections during the run see only what the run allocated, and a
cycle the run leaves behind is still collected, by a later collection. A process that froze
objects itself (a server after warm-up) is left as it is.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["young_collections_only"]


@contextlib.contextmanager
def young_collections_only() -> Iterator[None]:
    """For the block, garbage collections skip the objects that were alive before it."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield  # frozen (or collection turned off) by the process itself: its choice
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
