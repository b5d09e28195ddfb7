"""A window's node ids made from its positions when first read (``recsim.engine.timeline._NodeIds``):
the same window, by value, as one given its ids."""

from __future__ import annotations

import copy
import pickle
from types import SimpleNamespace
from typing import Any

import numpy as np

from recsim.engine.timeline import LAZY_IDS, Window


def _lazy() -> Window:
    index: Any = SimpleNamespace(ids_array=np.array([10, 11, 12, 13], dtype=np.int64))
    return Window(0.5, 2.0, LAZY_IDS, np.array([1, 3], dtype=np.intp), index)  # type: ignore[arg-type]


def test_the_ids_are_those_at_the_positions() -> None:
    window = _lazy()
    assert window.__dict__["_node_ids"] is LAZY_IDS  # not made yet
    assert window.node_ids == frozenset({11, 13})
    assert window.__dict__["_node_ids"] == frozenset({11, 13})  # made once, kept


def test_a_lazy_window_is_the_window_of_its_ids() -> None:
    given = Window(0.5, 2.0, frozenset({11, 13}))
    assert _lazy() == given and given == _lazy()
    assert hash(_lazy()) == hash(given)
    assert repr(_lazy()) == repr(given)
    assert _lazy() != Window(0.5, 2.0, frozenset({11}))


def test_a_lazy_window_pickles_and_copies_as_itself() -> None:
    assert pickle.loads(pickle.dumps(_lazy())).node_ids == frozenset({11, 13})
    assert copy.deepcopy(_lazy()) == Window(0.5, 2.0, frozenset({11, 13}))
    assert pickle.loads(pickle.dumps(LAZY_IDS)) is LAZY_IDS
