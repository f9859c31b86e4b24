"""The pipeline declaration: one small spec object, validated when it is defined.

::

    pipeline = LesterPipeline(
        name="complaints",
        sources={
            "customers": SourceSpec("data/customers.csv", key="customer_id"),
            "mails": SourceSpec("data/mails.csv", key="mail_id"),
        },
        prepare=prepare_frames,          # prepare(customers: Frame, mails: Frame) -> Frame
        split=SplitSpec(by="customers", test_fraction=0.2, seed=0),
        features=feature_encoding,       # () -> unfitted sklearn ColumnTransformer
        label=label,                     # (prepared rows: pandas DataFrame) -> one value per row
        label_inputs=("sentiment", "level"),
        model=model,                     # () -> unfitted sklearn estimator
    )

:func:`~lester_dagster.orchestration.build_definitions` turns it into Dagster assets. The
pipeline is a chain of :class:`Step` s: one per source, the prepared rows, ``train`` / ``test``,
``X_train`` / ``y_train`` / ``model`` (fitted together) and ``X_test`` / ``y_test``.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from lester_dagster.errors import PlanError, UnknownSourceError, preview
from lester_dagster.frame import Frame, read_csv, read_json, read_parquet

__all__ = [
    "FORMATS",
    "STEP_KINDS",
    "LesterPipeline",
    "SourceSpec",
    "SplitSpec",
    "Step",
    "StepKind",
]

StepKind: TypeAlias = Literal[
    "source", "prepared", "train", "test", "X_train", "y_train", "model", "X_test", "y_test"
]
STEP_KINDS: tuple[StepKind, ...] = (
    "source", "prepared", "train", "test", "X_train", "y_train", "model", "X_test", "y_test"
)  # fmt: skip
FORMATS = ("csv", "parquet", "json")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GLOB_CHARACTERS = "*?["


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise PlanError(
            f"{what} must be a name of letters, digits and underscores that does not start with "
            f"a digit (it becomes a Dagster asset key), got {value!r}"
        )
    return value


def _check_callable(value: object, what: str, expected: str) -> None:
    if not callable(value):
        raise PlanError(f"{what} must be {expected}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class SourceSpec:
    """A source file (or set of files) of the pipeline.

    * ``path``: the file (read when the source asset materialises, not when it is defined);
      or, for a **multi-file source**, a glob pattern (``data/mails-*.csv``: the path contains
      ``*``, ``?`` or ``[``) or a directory (its files of the format's extension: ``*.csv``,
      ``*.parquet``, ``*.json`` / ``*.jsonl``). A multi-file source is partitioned by file, one
      partition per file, listed when the pipeline is defined (see
      :mod:`lester_dagster.orchestration.partitions`);
    * ``format``: ``csv``, ``parquet`` or ``json`` (JSON lines);
    * ``key``: the column(s) identifying a record (``None``: a content hash of the record);
    * ``read_options``: extra keyword arguments for the reader (``pandas.read_csv`` ...);
    * ``generate``: optional, called with no arguments when the file is missing and expected
      to create it (the running example writes its synthetic data this way); the asset's
      metadata then says ``lester/generated: true``. Single-file sources only.
    """

    path: str | os.PathLike[str]
    format: str = "csv"
    key: str | Sequence[str] | None = None
    read_options: Mapping[str, Any] = field(default_factory=dict)
    generate: Callable[[], object] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or not str(self.path):
            raise PlanError(
                f"SourceSpec path must be a file path, a glob pattern or a directory, got "
                f"{self.path!r}"
            )
        if self.format not in FORMATS:
            raise PlanError(
                f"SourceSpec format must be one of {list(FORMATS)}, got {self.format!r}; "
                "for other files convert them first or read them with read_options"
            )
        keys = self.key_columns
        if any(not isinstance(k, str) or not k for k in keys):
            raise PlanError(f"SourceSpec key must be a column name or a list of them, got {keys!r}")
        if not isinstance(self.read_options, Mapping):
            raise PlanError(
                f"SourceSpec read_options must be a dict of reader keyword arguments, got "
                f"{type(self.read_options).__name__}"
            )
        if self.generate is not None:
            _check_callable(self.generate, "SourceSpec generate", "a function of no arguments")

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The key columns (empty: the record's content hash is its key)."""
        if self.key is None:
            return ()
        return (self.key,) if isinstance(self.key, str) else tuple(self.key)

    def read(self, name: str, file: str | os.PathLike[str]) -> Frame:
        """The source frame of ``file`` (one of this source's files), named ``name``, with the
        spec's format, key columns and reader options."""
        reader = {"csv": read_csv, "parquet": read_parquet, "json": read_json}[self.format]
        key = list(self.key_columns) or None
        return reader(file, name=name, key=key, **dict(self.read_options))

    @property
    def file(self) -> Path:
        """``path`` as a ``Path`` (the file of a single-file source)."""
        return Path(self.path)

    @property
    def pattern(self) -> bool:
        """True if ``path`` is a glob pattern (contains ``*``, ``?`` or ``[``)."""
        return any(c in str(self.path) for c in _GLOB_CHARACTERS)

    @property
    def multi_file(self) -> bool:
        """True for a multi-file source: ``path`` is a glob pattern or an existing directory
        (checked now, on the file system)."""
        return self.pattern or self.file.is_dir()


@dataclass(frozen=True)
class SplitSpec:
    """A deterministic train/test split by a hash of the key of source ``by`` (as
    :meth:`lester_dagster.frame.Frame.split`): a record's side depends on its key and ``seed``
    only, so deleting records never moves others between train and test."""

    by: str
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.by, str) or not self.by:
            raise PlanError(f"SplitSpec by must name a source, got {self.by!r}")
        fraction = self.test_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 < float(fraction) < 1.0
        ):
            raise PlanError(
                f"SplitSpec test_fraction must lie strictly between 0 and 1 (e.g. 0.2), got "
                f"{fraction!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise PlanError(f"SplitSpec seed must be an int, got {self.seed!r}")


@dataclass(frozen=True)
class Step:
    """One asset of a pipeline: its kind and its name (the source name for sources, the
    pipeline name for the prepared rows, else the kind)."""

    kind: StepKind
    name: str


def _prepare_parameters(prepare: Callable[..., Any], sources: Mapping[str, SourceSpec]) -> bool:
    """Check that prepare() takes exactly the sources as keyword parameters; True if it takes
    them as ``**frames``."""
    try:
        signature = inspect.signature(prepare)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"cannot read the parameters of prepare ({exc}); pass a function") from exc
    named: list[str] = []
    var_keyword = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
        elif param.kind is param.VAR_POSITIONAL:
            continue
        elif param.kind is param.POSITIONAL_ONLY:
            raise PlanError(
                f"prepare() parameter {param.name!r} is positional-only; source frames are "
                "passed by name, so make it a normal parameter named after its source"
            )
        elif param.name in sources:
            named.append(param.name)
        elif param.default is param.empty:
            raise PlanError(
                f"prepare() takes parameter {param.name!r}, but the pipeline has no source of "
                f"that name; sources: {preview(sources)}. Name each parameter after a source "
                "(or give it a default)"
            )
    unused = [s for s in sources if s not in named]
    if unused and not var_keyword:
        raise PlanError(
            f"source(s) {preview(unused)} are not parameters of prepare(); add a parameter "
            "named after each source (prepare receives the source frames by name) or remove "
            "the source"
        )
    return var_keyword


@dataclass(frozen=True)
class LesterPipeline:
    """A declarative ML pipeline (see the module docstring); validated on construction.

    ``prepare`` receives one :class:`~lester_dagster.frame.Frame` per source, by name, and
    returns the prepared frame; ``features`` and ``model`` are factories of *unfitted*
    scikit-learn objects (called once per run); ``label`` maps the prepared rows (only the
    ``label_inputs`` columns, if given) to one label per row. ``owners`` and ``tags`` go to
    every asset; ``schedule`` is the cron of the ``<name>_nightly`` schedule (``None``: none).
    ``partitions``: N > 0 partitions the single-file sources into N key-hash buckets; 0
    (default): they are unpartitioned. Multi-file sources (a glob pattern or a directory as
    ``path``) are partitioned by file either way. The prepared rows, train and test follow the
    split source's partitions where the plan allows it (see
    :mod:`lester_dagster.orchestration.partitions`).
    """

    name: str
    sources: Mapping[str, SourceSpec]
    prepare: Callable[..., Any]
    split: SplitSpec
    features: Callable[[], Any]
    label: Callable[[Any], Any]
    model: Callable[[], Any]
    label_inputs: Sequence[str] | None = None
    description: str | None = None
    owners: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    schedule: str | None = "0 3 * * *"
    partitions: int = 0

    def __post_init__(self) -> None:
        _check_name(self.name, "LesterPipeline name")
        if (
            isinstance(self.partitions, bool)
            or not isinstance(self.partitions, int)
            or self.partitions < 0
        ):
            raise PlanError(
                f"LesterPipeline partitions must be a number of key-hash buckets >= 0 (0: "
                f"unpartitioned), got {self.partitions!r}"
            )
        if not isinstance(self.sources, Mapping) or not self.sources:
            raise PlanError(
                "LesterPipeline sources must be a non-empty dict of name -> SourceSpec, got "
                f"{self.sources!r}"
            )
        reserved = {self.name, *(k for k in STEP_KINDS if k not in ("source", "prepared"))}
        for name, spec in self.sources.items():
            _check_name(name, "a source name")
            if name in reserved:
                raise PlanError(
                    f"source name {name!r} clashes with the asset of another pipeline step "
                    f"({sorted(reserved)}); rename the source"
                )
            if not isinstance(spec, SourceSpec):
                raise PlanError(
                    f"source {name!r} must be a SourceSpec(path, format, key), got "
                    f"{type(spec).__name__}"
                )
        object.__setattr__(self, "sources", dict(self.sources))
        _check_callable(self.prepare, "prepare", "a function of the source frames")
        _prepare_parameters(self.prepare, self.sources)
        if not isinstance(self.split, SplitSpec):
            raise PlanError(
                f"split must be a SplitSpec(by, test_fraction, seed), got {self.split!r}"
            )
        if self.split.by not in self.sources:
            raise UnknownSourceError(self.split.by, self.sources)
        _check_callable(self.features, "features", "a factory of an unfitted ColumnTransformer")
        _check_callable(self.label, "label", "a function of the prepared rows")
        _check_callable(self.model, "model", "a factory of an unfitted estimator")
        if self.label_inputs is not None:
            if isinstance(self.label_inputs, str) or not all(
                isinstance(c, str) for c in self.label_inputs
            ):
                raise PlanError(
                    f"label_inputs must be a list of column names, got {self.label_inputs!r}"
                )
            object.__setattr__(self, "label_inputs", tuple(self.label_inputs))
        object.__setattr__(self, "owners", tuple(self.owners))
        object.__setattr__(self, "tags", dict(self.tags))
        self._check_factories()

    def _check_factories(self) -> None:
        from sklearn.compose import ColumnTransformer

        try:
            encoding = self.features()
        except Exception as exc:
            raise PlanError(f"features() failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(encoding, ColumnTransformer):
            raise PlanError(
                f"features() must return an unfitted sklearn ColumnTransformer, got "
                f"{type(encoding).__name__}; wrap your encoders, e.g. "
                "ColumnTransformer([('scale', StandardScaler(), ['age'])])"
            )
        try:
            estimator = self.model()
        except Exception as exc:
            raise PlanError(f"model() failed: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(estimator, "fit", None)):
            raise PlanError(
                f"model() must return an unfitted scikit-learn estimator (with fit), got "
                f"{type(estimator).__name__}"
            )

    # -- the steps -----------------------------------------------------------------------------
    @property
    def takes_all_sources(self) -> bool:
        return _prepare_parameters(self.prepare, self.sources)

    def source_step(self, name: str) -> Step:
        if name not in self.sources:
            raise UnknownSourceError(name, self.sources)
        return Step("source", name)

    def step(self, kind: StepKind) -> Step:
        """The step of ``kind`` (not for sources: use :meth:`source_step`)."""
        if kind == "source":
            raise PlanError("a pipeline has one step per source; use source_step(name)")
        if kind not in STEP_KINDS:
            raise PlanError(f"unknown step kind {kind!r}; kinds: {list(STEP_KINDS)}")
        return Step(kind, self.name if kind == "prepared" else kind)

    @property
    def steps(self) -> tuple[Step, ...]:
        """All steps, sources first, in dependency order."""
        return (
            *(self.source_step(s) for s in self.sources),
            *(self.step(k) for k in STEP_KINDS if k != "source"),
        )

    def parents(self, step: Step) -> tuple[Step, ...]:
        """The steps whose artifacts ``step`` reads."""
        parents: dict[str, tuple[Step, ...]] = {
            "source": (),
            "prepared": tuple(self.source_step(s) for s in self.sources),
            "train": (self.step("prepared"),),
            "test": (self.step("prepared"),),
            "X_train": (self.step("train"),),
            "y_train": (self.step("train"),),
            "model": (self.step("X_train"), self.step("y_train")),
            "X_test": (self.step("test"), self.step("model")),
            "y_test": (self.step("test"),),
        }
        return parents[step.kind]
