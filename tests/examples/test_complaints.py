"""The running example's preparation: the frame plan agrees with plain pandas, with provenance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lester_dagster.examples.complaints import PREPARED_COLUMNS, prepare, prepare_pandas
from lester_dagster.examples.complaints_data import write_complaints
from lester_dagster.frame import ColumnRef, Result


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_complaints(tmp_path_factory.mktemp("complaints"), 400, seed=7)


@pytest.fixture(scope="module")
def result(sources: tuple[Path, Path]) -> Result:
    return prepare(*sources).execute()


def test_plan_gives_the_same_rows_as_plain_pandas(
    sources: tuple[Path, Path], result: Result
) -> None:
    expected = prepare_pandas(pd.read_csv(sources[0]), pd.read_csv(sources[1]))
    got = result.to_pandas()
    assert list(got.columns) == list(PREPARED_COLUMNS)
    assert len(got) > 0
    pd.testing.assert_frame_equal(
        got.sort_values("mail_id").reset_index(drop=True),
        expected.sort_values("mail_id").reset_index(drop=True),
        check_dtype=False,
    )


def test_every_row_derives_from_its_own_mail_and_customer(result: Result) -> None:
    data = result.to_pandas()
    for row in range(len(data)):
        back = result.lineage.backward(row)
        assert back == {
            "mails": [int(data.at[row, "mail_id"])],
            "customers": [int(data.at[row, "customer_id"])],
        }


def test_forward_from_a_customer_finds_exactly_its_rows(result: Result) -> None:
    data = result.to_pandas()
    for customer in data["customer_id"].drop_duplicates().head(20):
        expected = sorted(data.index[data["customer_id"] == customer].tolist())
        assert result.lineage.forward("customers", [int(customer)]) == expected


def test_column_lineage_of_the_prepared_frame(result: Result) -> None:
    m, c = "mails", "customers"
    expected = {
        "mail_id": {(m, "mail_id")},
        "email": {(m, "email"), (c, "email")},
        "date": {(m, "date")},
        "title": {(m, "subject")},
        "text": {(m, "text")},
        "customer_id": {(c, "customer_id")},
        "bank": {(c, "bank")},
        "country": {(c, "country")},
        "level": {(c, "level")},
        "sentiment": {(m, "text")},
    }
    for column, refs in expected.items():
        assert result.lineage.columns(column) == {ColumnRef(*r) for r in refs}


def test_relational_part_without_sentiment(sources: tuple[Path, Path]) -> None:
    plain = prepare_pandas(pd.read_csv(sources[0]), pd.read_csv(sources[1]), with_sentiment=False)
    got = prepare(*sources, with_sentiment=False).execute().to_pandas()
    assert "sentiment" not in got.columns
    assert sorted(got["mail_id"]) == sorted(plain["mail_id"])


def test_title_word_count_counts_words_not_characters(result: Result) -> None:
    data = result.to_pandas()
    assert data["title_words"].tolist() == [len(t.split()) for t in data["title"]]


def test_label_is_negative_and_premium(result: Result) -> None:
    from lester_dagster.examples.complaints import label

    data = result.to_pandas()
    expected = [int(s < 0 and lv == "premium") for s, lv in zip(data["sentiment"], data["level"])]
    assert label(data).tolist() == expected
    assert 0 < sum(expected) < len(expected)


def test_feature_encoding_and_model_train_on_the_prepared_rows(result: Result) -> None:
    from lester_dagster.examples.complaints import feature_encoding, label, model
    from lester_dagster.features.matrix import encode_labels, fit_encode

    _, features = fit_encode(feature_encoding(text_features=64), result)
    assert [b.name for b in features.blocks] == ["title", "text", "title_words", "country"]
    assert features.shape[0] == len(result)
    y = encode_labels(label, result).y
    fitted = model().fit(features.X, y)
    assert fitted.score(features.X, y) > 0.6
