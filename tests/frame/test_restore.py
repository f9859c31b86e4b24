"""restore_result and KeyResolver: an executed frame rebuilt from stored parts answers lineage
queries as the original does, and a feature matrix's resolver pickles on its own."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from lester_dagster.errors import PlanError, UnknownKeyError, UnknownSourceError
from lester_dagster.features.matrix import fit_encode
from lester_dagster.frame import KeyResolver, Result, col, from_pandas, restore_result

CUSTOMERS = pd.DataFrame(
    {"region": ["eu", "eu", "us", "us"], "cid": [1, 2, 1, 3], "age": [30, 40, 50, 60]}
)
NOTES = pd.DataFrame(
    {"region": ["eu", "us", "us", "eu"], "cid": [1, 1, 3, 1], "text": list("abcd")}
)


@pytest.fixture
def joined() -> Result:
    customers = from_pandas(CUSTOMERS, name="customers", key=["region", "cid"])
    notes = from_pandas(NOTES, name="notes")  # keyed by content hash
    return notes.join(customers, on=["region", "cid"]).filter(col("age") > 20).execute()


def _restored(result: Result) -> Result:
    return restore_result(
        result.to_pandas(),
        result.prov,
        lineage=result.schema.lineage,
        key_indexes={s: t.keys for s, t in result.sources.items()},
    )


def test_restored_results_answer_lineage_queries_alike(joined: Result) -> None:
    restored = _restored(joined)
    assert restored.to_pandas().equals(joined.to_pandas())
    for row in range(len(joined)):
        assert restored.lineage.backward(row) == joined.lineage.backward(row)
    assert restored.lineage.forward("customers", [("eu", 1)]) == joined.lineage.forward(
        "customers", [("eu", 1)]
    )
    assert restored.lineage.columns("age") == joined.lineage.columns("age")
    assert restored.schema.sources["customers"].key == ("region", "cid")
    assert restored.schema.sources["notes"].key == ()


def test_restored_results_encode_like_the_original(joined: Result) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    def ct() -> ColumnTransformer:
        return ColumnTransformer([("age", StandardScaler(), ["age"])])

    _, a = fit_encode(ct(), joined)
    _, b = fit_encode(ct(), _restored(joined))
    assert np.allclose(a.X, b.X)
    assert a.blocks == b.blocks


def test_restore_needs_lineage_for_every_column(joined: Result) -> None:
    with pytest.raises(PlanError, match="no column lineage for column"):
        restore_result(joined.to_pandas(), joined.prov, lineage={}, key_indexes={})
    with pytest.raises(PlanError, match="provenance describes"):
        restore_result(
            joined.to_pandas().head(1), joined.prov, lineage=joined.schema.lineage, key_indexes={}
        )


def test_a_matrix_resolver_is_a_picklable_key_resolver(joined: Result) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    _, matrix = fit_encode(ColumnTransformer([("age", StandardScaler(), ["age"])]), joined)
    resolver = matrix.resolve
    assert isinstance(resolver, KeyResolver) and resolver.strict
    copy = pickle.loads(pickle.dumps(resolver))
    assert np.array_equal(copy("customers", [("us", 3)]), resolver("customers", [("us", 3)]))
    assert copy.keys_of("customers", copy("customers", [("us", 3)])) == [("us", 3)]
    with pytest.raises(UnknownKeyError):
        copy("customers", [("us", 99)])
    assert len(copy("customers", [("us", 99)], strict=False)) == 0
    with pytest.raises(UnknownSourceError):
        copy("orders", [1])
    assert set(KeyResolver.of_result(joined).sources) == {"notes", "customers"}


def test_resolvers_of_restored_results_drop_keys_the_artifact_does_not_hold(
    joined: Result,
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler

    restored = _restored(joined)
    assert joined.complete_key_indexes and not restored.complete_key_indexes
    _, matrix = fit_encode(ColumnTransformer([("age", StandardScaler(), ["age"])]), restored)
    assert not matrix.resolve.strict  # type: ignore[attr-defined]
    assert len(matrix.resolve("customers", [("us", 99)])) == 0
    assert matrix.forward("customers", [("eu", 1)]).rows.tolist() == joined.lineage.forward(
        "customers", [("eu", 1)]
    )
