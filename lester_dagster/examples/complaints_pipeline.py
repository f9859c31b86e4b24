"""The running example as a :class:`~lester_dagster.orchestration.LesterPipeline`.

Sources are ``customers.csv`` and ``mails.csv`` of the example's data generator in a directory
(generated there, deterministically, when missing); preparation, features, label and model
are those of :mod:`lester_dagster.examples.complaints`. ``definitions/complaints.py`` and the
demo both build their pipeline here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from lester_dagster.examples import complaints as example
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.orchestration import LesterPipeline, SourceSpec, SplitSpec

__all__ = ["DEFAULT_CUSTOMERS", "make_pipeline"]

DEFAULT_CUSTOMERS = 2_000


def make_pipeline(
    directory: str | os.PathLike[str],
    customers: int = DEFAULT_CUSTOMERS,
    *,
    seed: int = 0,
    partitions: int = 0,
) -> LesterPipeline:
    """The running example reading (or generating with ``customers`` customers and ``seed``)
    ``customers.csv`` and ``mails.csv`` in ``directory``."""
    directory = Path(directory)
    generate = functools.partial(write_complaints, directory, customers, seed=seed)
    return LesterPipeline(
        name="complaints",
        description="The running example of the Lester paper: complaint mails of bank "
        "customers, joined to the customers, labelled negative & premium.",
        sources={
            "customers": SourceSpec(
                directory / "customers.csv", key="customer_id", generate=generate
            ),
            "mails": SourceSpec(directory / "mails.csv", key="mail_id", generate=generate),
        },
        prepare=example.prepare_frames,
        split=SplitSpec(by="customers", test_fraction=0.2, seed=seed),
        features=example.feature_encoding,
        label=example.label,
        label_inputs=example.LABEL_INPUTS,
        model=example.model,
        partitions=partitions,
    )
