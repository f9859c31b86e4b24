"""The paper's running example: preparing customer complaint mails, with provenance.

Two csv sources, ``customers`` (key ``customer_id``) and ``mails`` (key ``mail_id``). The
preparation keeps customers from a few countries, keeps mails from 2022 on that mention a
complaint or a bank account, joins mails to customers by email, lower-cases subject (as
``title``, with its word count) and text (a missing subject or text counts as empty, so a
forgotten subject reads as ""), and scores the text's sentiment with VADER (its lexicon ships
inside the ``vaderSentiment`` package, so nothing is downloaded).
:func:`feature_encoding`, :func:`label` and :func:`model` give the rest of the pipeline.

:func:`prepare` is the declarative version (a :class:`~lester_dagster.frame.Frame`);
:func:`prepare_pandas` is the same computation in plain pandas, without provenance, used as the
baseline of ``benchmarks/frame_overhead.py`` and as an oracle in the tests.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import pandas as pd

from lester_dagster.examples.complaints_data import KEPT_COUNTRIES, START_DATE, TOPIC_PATTERN
from lester_dagster.frame import Frame, col, read_csv

__all__ = [
    "LABEL_INPUTS",
    "PREPARED_COLUMNS",
    "feature_encoding",
    "label",
    "model",
    "prepare",
    "prepare_frames",
    "prepare_pandas",
    "sentiment",
]

PREPARED_COLUMNS = (
    "mail_id", "email", "date", "title", "title_words", "text", "customer_id", "bank", "country",
    "level", "sentiment",
)  # fmt: skip


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER's compound sentiment of ``text``, in [-1, 1] (negative below 0)."""
    return float(_analyzer().polarity_scores(text)["compound"])


def prepare(
    customers_csv: str | os.PathLike[str],
    mails_csv: str | os.PathLike[str],
    *,
    with_sentiment: bool = True,
) -> Frame:
    """The running example's data preparation as a provenance-tracking plan.

    ``with_sentiment=False`` leaves out the VADER column (benchmarks use it to time the
    relational part alone).
    """
    customers = read_csv(customers_csv, name="customers", key="customer_id")
    mails = read_csv(mails_csv, name="mails", key="mail_id")
    return prepare_frames(customers, mails, with_sentiment=with_sentiment)


def prepare_frames(customers: Frame, mails: Frame, *, with_sentiment: bool = True) -> Frame:
    """The preparation of :func:`prepare` on source frames (however they were read): what a
    :class:`~lester_dagster.orchestration.LesterPipeline` calls with its source assets."""
    kept_customers = customers.filter(col("country").isin(KEPT_COUNTRIES))
    topical_mails = mails.filter(
        (col("date") >= START_DATE) & col("text").str.contains(TOPIC_PATTERN, case=False)
    )
    prepared = (
        topical_mails.join(kept_customers, on="email")
        .with_column("title", col("subject").fill_null("").str.lower())
        .with_column("title_words", col("title").str.word_count())
        .with_column("text", col("text").fill_null("").str.lower())
    )
    if not with_sentiment:
        return prepared.select(*PREPARED_COLUMNS[:-1])
    return prepared.with_column("sentiment", sentiment, inputs=["text"]).select(*PREPARED_COLUMNS)


def prepare_pandas(
    customers: pd.DataFrame, mails: pd.DataFrame, *, with_sentiment: bool = True
) -> pd.DataFrame:
    """The same preparation in plain pandas, without provenance."""
    kept_customers = customers[customers["country"].isin(KEPT_COUNTRIES)]
    topical = mails[
        (mails["date"] >= START_DATE)
        & mails["text"].str.contains(TOPIC_PATTERN, case=False, regex=True, na=False)
    ]
    joined = topical.merge(kept_customers, on="email")
    joined["title"] = joined["subject"].fillna("").str.lower()
    joined["title_words"] = [len(t.split()) for t in joined["title"].tolist()]
    joined["text"] = joined["text"].fillna("").str.lower()
    if not with_sentiment:
        return joined[list(PREPARED_COLUMNS[:-1])].reset_index(drop=True)
    joined["sentiment"] = [sentiment(t) for t in joined["text"].tolist()]
    return joined[list(PREPARED_COLUMNS)].reset_index(drop=True)


def feature_encoding(text_features: int = 2**9) -> Any:
    """The running example's features: hashed words of title and text, the standardised title
    word count (the paper's LLM rewrite counted words; the original counted characters) and
    one-hot country. A fresh, unfitted ColumnTransformer."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("title", HashingVectorizer(n_features=text_features, alternate_sign=False), "title"),
            ("text", HashingVectorizer(n_features=text_features, alternate_sign=False), "text"),
            ("title_words", StandardScaler(), ["title_words"]),
            ("country", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ],
        sparse_threshold=1.0,
    )


LABEL_INPUTS = ("sentiment", "level")


def label(prepared: pd.DataFrame) -> pd.Series:
    """1 when the mail is negative (VADER compound below 0) and the customer is premium."""
    return ((prepared["sentiment"] < 0) & (prepared["level"] == "premium")).astype("int64")


def model() -> Any:
    """The running example's model: an L2-regularised logistic regression."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=1000)
