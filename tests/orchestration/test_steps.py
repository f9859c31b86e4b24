"""steps.apply_ledger: what a rematerialisation does with the ledger's deletions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lester_dagster.errors import SourceError
from lester_dagster.frame import from_pandas
from lester_dagster.orchestration.artifacts import FrameArtifact
from lester_dagster.orchestration.steps import apply_ledger


@pytest.fixture
def mails() -> FrameArtifact:
    data = pd.DataFrame(
        {
            "mail_id": [1, 2, 3, 4],
            "subject": ["a", None, "c", "d"],
            "score": [10, 20, 30, 40],
        }
    )
    return FrameArtifact.from_result(from_pandas(data, name="mails", key="mail_id").execute())


def test_records_leave_and_values_go_missing(mails: FrameArtifact) -> None:
    out, counts = apply_ledger(mails, "mails", [2], {"subject": [1, 2, 3], "score": [4]})
    assert out.data["mail_id"].tolist() == [1, 3, 4]
    assert out.data["subject"].isna().tolist() == [True, True, False]
    assert out.data["score"].isna().tolist() == [False, False, True]
    # record 2 left whole; its values are not counted; subject of 2 was already missing
    assert counts == {"records": 1, "values": 3}
    assert 2 not in out.key_indexes["mails"]["mail_id"].tolist()
    assert np.array_equal(out.prov.keys["mails"], mails.prov.keys["mails"][[0, 2, 3]])


def test_nothing_to_filter_returns_the_rows_unchanged(mails: FrameArtifact) -> None:
    out, counts = apply_ledger(mails, "mails", [99], {})
    assert out is mails and counts == {"records": 0, "values": 0}
    out, counts = apply_ledger(mails, "mails", [], {})
    assert out is mails and counts == {"records": 0, "values": 0}


def test_a_deleted_column_the_file_lost_is_an_error(mails: FrameArtifact) -> None:
    with pytest.raises(SourceError, match="no longer has"):
        apply_ledger(mails, "mails", [], {"body": [1]})
