"""The error hierarchy: one root, built-in bases, plain messages."""

from __future__ import annotations

import pytest

from lester_dagster import errors
from lester_dagster.errors import LesterError, UnknownColumnError, preview


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n.endswith("Error")])
def test_every_error_is_a_lester_error_and_a_builtin(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, LesterError)
    if cls is not LesterError:
        builtins = [b for b in cls.__mro__ if b.__module__ == "builtins" and b is not object]
        assert any(b is not Exception and b is not BaseException for b in builtins), cls.__mro__


def test_unknown_column_is_a_key_error_with_a_plain_message() -> None:
    err = UnknownColumnError("contry", ["country", "email"], "select")
    assert isinstance(err, KeyError)
    assert str(err) == "unknown column 'contry' in select; the frame has: 'country', 'email'"


def test_preview_shortens_long_lists() -> None:
    assert preview(range(12), limit=3) == "0, 1, 2, ... (12 in all)"
    assert preview([]) == "(none)"
