"""Tests for the synthetic complaints data generator."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lester_dagster.examples.complaints_data import (
    ALL_COUNTRIES,
    BANKS,
    KEPT_COUNTRIES,
    LEVELS,
    START_DATE,
    TOPIC_PATTERN,
    generate_frames,
    write_complaints,
)

N_CUSTOMERS = 4_000
SECRET = re.compile(r"IBAN [A-Z]{2}\d{2}(?: \d{4}){4} \d{2}")


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_frames(N_CUSTOMERS, seed=7)


@pytest.mark.parametrize("mails_per_customer", [1, 3, 5])
def test_shapes_columns_and_dtypes(mails_per_customer: int) -> None:
    customers, mails = generate_frames(250, mails_per_customer=mails_per_customer, seed=1)
    assert list(customers.columns) == ["customer_id", "email", "bank", "country", "level"]
    assert list(mails.columns) == ["mail_id", "email", "date", "subject", "text"]
    assert len(customers) == 250
    assert len(mails) == 250 * mails_per_customer
    assert customers["customer_id"].dtype == np.int64
    assert mails["mail_id"].dtype == np.int64
    for frame, id_column in ((customers, "customer_id"), (mails, "mail_id")):
        for column in frame.columns.drop(id_column):
            assert pd.api.types.is_string_dtype(frame[column]), column
        assert not frame.isna().any().any()


def test_single_customer_works() -> None:
    customers, mails = generate_frames(1, mails_per_customer=1)
    assert len(customers) == 1
    assert len(mails) == 1


def test_keys_and_emails_unique(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    customers, mails = frames
    assert customers["customer_id"].tolist() == list(range(1, N_CUSTOMERS + 1))
    assert mails["mail_id"].tolist() == list(range(1, len(mails) + 1))
    assert customers["email"].is_unique
    assert customers["email"].str.fullmatch(r"c\d{6,}@example\.org").all()


def test_emails_stay_unique_beyond_six_digits() -> None:
    customers, _ = generate_frames(1_000_123, mails_per_customer=1)
    assert customers["email"].is_unique
    assert customers["email"].iloc[-1].startswith("c1000123@")


def test_about_five_percent_of_mails_match_no_customer(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    customers, mails = frames
    unmatched = ~mails["email"].isin(customers["email"])
    assert 0.02 <= unmatched.mean() <= 0.10
    joined = mails.merge(customers, on="email", how="inner")
    assert len(joined) == int((~unmatched).sum())
    # Many different customers write mails, not just a handful.
    assert joined["customer_id"].nunique() > N_CUSTOMERS / 2


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    first = generate_frames(500, seed=3)
    again = generate_frames(500, seed=3)
    other = generate_frames(500, seed=4)
    for left, right in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(left, right)
    for column in ("country", "level", "bank"):
        assert not first[0][column].equals(other[0][column])
    for column in ("email", "date", "subject", "text"):
        assert not first[1][column].equals(other[1][column])


def test_customer_categories_and_shares(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    customers, _ = frames
    assert set(customers["country"]) == set(ALL_COUNTRIES)
    assert set(customers["bank"]) <= set(BANKS)
    assert customers["bank"].nunique() > 1
    assert set(customers["level"]) == set(LEVELS)
    assert 0.40 <= customers["country"].isin(KEPT_COUNTRIES).mean() <= 0.60
    assert 0.20 <= (customers["level"] == "premium").mean() <= 0.40


def test_dates_are_iso_and_spread_over_five_years(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, mails = frames
    assert mails["date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    dates = pd.to_datetime(mails["date"], format="%Y-%m-%d")
    assert dates.min() >= pd.Timestamp("2020-01-01")
    assert dates.max() <= pd.Timestamp("2024-12-31")
    assert set(dates.dt.year) == {2020, 2021, 2022, 2023, 2024}
    assert 0.45 <= (dates >= pd.Timestamp(START_DATE)).mean() <= 0.75


def test_texts_mention_the_topic_in_varying_case(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, mails = frames
    text = mails["text"]
    on_topic = text.str.contains(TOPIC_PATTERN, case=False, regex=True)
    assert 0.15 <= on_topic.mean() <= 0.35
    spellings = set(text[on_topic].str.extract(f"({TOPIC_PATTERN})", flags=re.IGNORECASE)[0])
    assert len({s.lower() for s in spellings}) == 2  # both "complaint" and "bank account"
    assert len(spellings) > 2  # ... and not always in the same case
    assert (text != text.str.lower()).all()  # mixed case everywhere (sentences start upper)
    assert (mails["subject"] != mails["subject"].str.lower()).any()


def test_texts_have_one_to_three_sentences(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, mails = frames
    sentences = mails["text"].str.count(r"[.!?](?:\s|$)")
    assert set(sentences) == {1, 2, 3}


def test_some_subjects_leak_secret_looking_tokens(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, mails = frames
    leaked = mails["subject"].str.contains(SECRET)
    assert 0.003 <= leaked.mean() <= 0.02
    assert mails.loc[leaked, "subject"].is_unique  # the tokens vary
    assert mails.loc[~leaked, "subject"].str.len().max() <= 40  # other subjects are short


def test_vader_sentiment_varies_from_negative_to_positive(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    _, mails = frames
    sample = mails["text"].str.lower().sample(1_500, random_state=0)
    compound = np.array([analyzer.polarity_scores(text)["compound"] for text in sample])
    assert compound.min() < -0.6
    assert compound.max() > 0.6
    assert 0.10 <= (compound < -0.05).mean() <= 0.70
    assert 0.10 <= (compound > 0.05).mean() <= 0.70


def test_write_complaints_round_trips_and_creates_directory(tmp_path: Path) -> None:
    out_dir = tmp_path / "nested" / "out"
    paths = write_complaints(out_dir, 300, mails_per_customer=2, seed=5)
    assert paths == (out_dir / "customers.csv", out_dir / "mails.csv")
    assert sorted(os.listdir(out_dir)) == ["customers.csv", "mails.csv"]
    expected = generate_frames(300, mails_per_customer=2, seed=5)
    for path, frame in zip(paths, expected, strict=True):
        pd.testing.assert_frame_equal(pd.read_csv(path), frame)


def test_write_complaints_replaces_existing_files(tmp_path: Path) -> None:
    write_complaints(str(tmp_path), 50, seed=1)
    customers_path, mails_path = write_complaints(str(tmp_path), 80, seed=2)
    assert sorted(os.listdir(tmp_path)) == ["customers.csv", "mails.csv"]
    expected_customers, expected_mails = generate_frames(80, seed=2)
    pd.testing.assert_frame_equal(pd.read_csv(customers_path), expected_customers)
    pd.testing.assert_frame_equal(pd.read_csv(mails_path), expected_mails)


def test_failed_write_keeps_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "customers.csv"
    target.write_text("old\n")

    def broken_to_csv(self: pd.DataFrame, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write("half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_to_csv)
    with pytest.raises(OSError, match="disk full"):
        write_complaints(tmp_path, 10)
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["customers.csv"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"customers": 0}, "customers"),
        ({"customers": -3}, "customers"),
        ({"customers": 2.5}, "customers"),
        ({"customers": True}, "customers"),
        ({"customers": "10"}, "customers"),
        ({"customers": 10, "mails_per_customer": 0}, "mails_per_customer"),
        ({"customers": 10, "mails_per_customer": 1.5}, "mails_per_customer"),
        ({"customers": 10, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs: dict[str, Any], name: str) -> None:
    bad_value = kwargs[name]
    pattern = rf"^{name} must be .*, got {re.escape(repr(bad_value))}$"
    with pytest.raises(ValueError, match=pattern):
        generate_frames(**kwargs)
    out_dir = tmp_path / "never"
    with pytest.raises(ValueError, match=pattern):
        write_complaints(out_dir, **kwargs)
    assert not out_dir.exists()
