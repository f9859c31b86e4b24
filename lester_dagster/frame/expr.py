"""Column expressions: small immutable trees, built with :func:`col`, :func:`lit` and operators.

An expression reads like pandas/Polars code::

    (col("date") >= "2022-01-01") & col("text").str.contains("complaint", case=False)
    col("subject").str.lower()
    when(col("sentiment") < 0, 1, 0)

Every expression knows the columns it reads (:meth:`Expr.columns`), which is what gives
``with_column`` its column lineage and lets plans reject unknown columns before running.
Engines evaluate expressions; this module only describes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lester_dagster.errors import PlanError

__all__ = ["Expr", "col", "lit", "when"]

# operator name -> Python spelling, used for readable reprs
_BINARY_SYMBOLS = {
    "add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%",
    "pow": "**", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
    "and": "&", "or": "|",
}  # fmt: skip


@dataclass(frozen=True, eq=False, repr=False)
class Expr:
    """One node of an expression tree: an operation name, its arguments and keyword options.

    Arguments are other expressions or plain Python values (literals). ``==`` and friends build
    new expressions, so expressions compare by identity and cannot be used in ``if``.
    """

    op: str
    args: tuple[Any, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    # -- introspection -------------------------------------------------------------------------
    def columns(self) -> frozenset[str]:
        """The names of all columns this expression reads."""
        if self.op == "col":
            return frozenset({self.args[0]})
        found: set[str] = set()
        for arg in self.args:
            if isinstance(arg, Expr):
                found |= arg.columns()
        return frozenset(found)

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def __repr__(self) -> str:
        if self.op == "col":
            return f"col({self.args[0]!r})"
        if self.op == "lit":
            return f"lit({self.args[0]!r})"
        if self.op in _BINARY_SYMBOLS:
            return f"({self.args[0]!r} {_BINARY_SYMBOLS[self.op]} {self.args[1]!r})"
        if self.op == "when":
            return "when({!r}, {!r}, {!r})".format(*self.args)
        if self.op in ("neg", "invert"):
            return ("-" if self.op == "neg" else "~") + repr(self.args[0])
        receiver, *rest = self.args
        if self.op.startswith("dt_"):  # date parts are properties: col("d").dt.year
            return f"{receiver!r}.dt.{self.op[3:]}"
        params = [repr(a) for a in rest] + [f"{k}={v!r}" for k, v in self.options]
        return f"{receiver!r}.{self.op.replace('_', '.', 1) if self.op.startswith(('str_', 'dt_')) else self.op}({', '.join(params)})"  # noqa: E501

    def __bool__(self) -> bool:
        raise PlanError(
            f"an expression has no truth value: {self!r}. Combine conditions with & | ~ "
            "(not and/or/not) and wrap each comparison in parentheses."
        )

    __hash__ = object.__hash__

    # -- operators -----------------------------------------------------------------------------
    def _bin(self, op: str, other: Any) -> Expr:
        return Expr(op, (self, _wrap(other)))

    def _rbin(self, op: str, other: Any) -> Expr:
        return Expr(op, (_wrap(other), self))

    def __add__(self, o: Any) -> Expr:
        return self._bin("add", o)

    def __radd__(self, o: Any) -> Expr:
        return self._rbin("add", o)

    def __sub__(self, o: Any) -> Expr:
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> Expr:
        return self._rbin("sub", o)

    def __mul__(self, o: Any) -> Expr:
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> Expr:
        return self._rbin("mul", o)

    def __truediv__(self, o: Any) -> Expr:
        return self._bin("truediv", o)

    def __rtruediv__(self, o: Any) -> Expr:
        return self._rbin("truediv", o)

    def __floordiv__(self, o: Any) -> Expr:
        return self._bin("floordiv", o)

    def __mod__(self, o: Any) -> Expr:
        return self._bin("mod", o)

    def __pow__(self, o: Any) -> Expr:
        return self._bin("pow", o)

    def __eq__(self, o: object) -> Expr:  # type: ignore[override]
        return self._bin("eq", o)

    def __ne__(self, o: object) -> Expr:  # type: ignore[override]
        return self._bin("ne", o)

    def __lt__(self, o: Any) -> Expr:
        return self._bin("lt", o)

    def __le__(self, o: Any) -> Expr:
        return self._bin("le", o)

    def __gt__(self, o: Any) -> Expr:
        return self._bin("gt", o)

    def __ge__(self, o: Any) -> Expr:
        return self._bin("ge", o)

    def __and__(self, o: Any) -> Expr:
        return self._bin("and", o)

    def __rand__(self, o: Any) -> Expr:
        return self._rbin("and", o)

    def __or__(self, o: Any) -> Expr:
        return self._bin("or", o)

    def __ror__(self, o: Any) -> Expr:
        return self._rbin("or", o)

    def __neg__(self) -> Expr:
        return Expr("neg", (self,))

    def __invert__(self) -> Expr: return Expr("invert", (self,))  # fmt: skip

    # -- methods (pandas names) ----------------------------------------------------------------
    def isin(self, values: Iterable[Any]) -> Expr:
        """True where the value is one of ``values``."""
        if isinstance(values, (str, bytes)):
            raise PlanError(f"isin() takes a list of values, got the string {values!r}")
        return Expr("isin", (self, tuple(values)))

    def is_null(self) -> Expr:
        return Expr("is_null", (self,))

    def not_null(self) -> Expr:
        return Expr("not_null", (self,))

    def fill_null(self, value: Any) -> Expr:
        """Replace missing values with ``value`` (a literal or another expression)."""
        return Expr("fill_null", (self, _wrap(value)))

    def astype(self, dtype: str) -> Expr:
        """Cast to a pandas dtype given by name (``"int64"``, ``"float64"``, ``"str"``, ...)."""
        return Expr("astype", (self, str(dtype)))

    def between(self, low: Any, high: Any) -> Expr:
        """``low <= value <= high``."""
        return Expr("between", (self, _wrap(low), _wrap(high)))

    def abs(self) -> Expr:
        return Expr("abs", (self,))

    def round(self, decimals: int = 0) -> Expr:
        return Expr("round", (self, int(decimals)))

    def clip(self, lower: Any = None, upper: Any = None) -> Expr:
        return Expr("clip", (self, lower, upper))

    def to_datetime(self, format: str | None = None) -> Expr:
        """Parse strings to datetimes (pandas.to_datetime)."""
        return Expr("to_datetime", (self,), (("format", format),))

    @property
    def str(self) -> _StrMethods:
        """String methods, as pandas' ``Series.str``."""
        return _StrMethods(self)

    @property
    def dt(self) -> _DtMethods:
        """Date parts, as pandas' ``Series.dt`` (strings are parsed as dates first)."""
        return _DtMethods(self)


class _StrMethods:
    __slots__ = ("_e",)

    def __init__(self, e: Expr) -> None:
        self._e = e

    def _call(self, op: str, *args: Any, **options: Any) -> Expr:
        return Expr("str_" + op, (self._e, *args), tuple(sorted(options.items())))

    def lower(self) -> Expr:
        return self._call("lower")

    def upper(self) -> Expr:
        return self._call("upper")

    def strip(self) -> Expr:
        return self._call("strip")

    def len(self) -> Expr: return self._call("len")  # fmt: skip

    def word_count(self) -> Expr:
        """Number of whitespace-separated words (``len(s.split())``)."""
        return self._call("word_count")

    def contains(self, pat: str, *, case: bool = True, regex: bool = True) -> Expr:
        """Whether ``pat`` occurs (a regex unless ``regex=False``); False for missing values,
        as are ``startswith``/``endswith``, so filters drop rows with missing text."""
        return self._call("contains", pat, case=case, regex=regex)

    def startswith(self, prefix: str) -> Expr:
        return self._call("startswith", prefix)

    def endswith(self, suffix: str) -> Expr:
        return self._call("endswith", suffix)

    def replace(self, pat: str, repl: str, *, regex: bool = False) -> Expr:
        return self._call("replace", pat, repl, regex=regex)

    def slice(self, start: int | None = None, stop: int | None = None) -> Expr:
        return self._call("slice", start, stop)


class _DtMethods:
    __slots__ = ("_e",)

    def __init__(self, e: Expr) -> None:
        self._e = e

    @property
    def year(self) -> Expr:
        return Expr("dt_year", (self._e,))

    @property
    def month(self) -> Expr:
        return Expr("dt_month", (self._e,))

    @property
    def day(self) -> Expr:
        return Expr("dt_day", (self._e,))

    @property
    def dayofweek(self) -> Expr: return Expr("dt_dayofweek", (self._e,))  # fmt: skip


def _wrap(value: Any) -> Any:
    """Leave expressions alone; plain values become literals."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (list, set, dict)):
        raise PlanError(
            f"a {type(value).__name__} cannot be used as a value in an expression "
            f"({value!r}); use .isin([...]) to test membership"
        )
    return Expr("lit", (value,))


def col(name: str) -> Expr:
    """The column called ``name``."""
    if not isinstance(name, str) or not name:
        raise PlanError(f"col() takes a column name (a non-empty string), got {name!r}")
    return Expr("col", (name,))


def lit(value: Any) -> Expr:
    """A constant."""
    return _wrap(value)  # type: ignore[no-any-return]


def when(condition: Expr, then: Any, otherwise: Any) -> Expr:
    """``then`` where ``condition`` holds, else ``otherwise`` (numpy.where)."""
    if not isinstance(condition, Expr):
        raise PlanError(f"when() needs an expression as condition, got {condition!r}")
    return Expr("when", (condition, _wrap(then), _wrap(otherwise)))
