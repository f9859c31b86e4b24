"""Objects as pickle protocol 5 with raw out-of-band buffers (store.pickling), alone and as the
default object format of save_object / load_object."""

from __future__ import annotations

import io
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lester_dagster.errors import ArtifactError
from lester_dagster.store import pickling
from lester_dagster.store.artifacts import load_object, save_object
from lester_dagster.store.atomic import MANIFEST


def _value() -> dict[str, object]:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(50, 7))
    X = sp.random(40, 30, density=0.2, format="csr", random_state=1)
    frame = pd.DataFrame(
        {"text": [f"mail {i}" for i in range(40)], "n": np.arange(40), "x": rng.normal(size=40)}
    )
    odd = np.arange(13, dtype=np.int8)  # a length that leaves the next buffer unaligned
    return {"dense": dense, "X": X, "frame": frame, "odd": odd, "again": dense, "label": "y"}


def _round_trip(value: object) -> tuple[object, pickling.Spans, bytes]:
    stream, buffers = io.BytesIO(), io.BytesIO()
    spans = pickling.dump(value, stream, buffers)
    return pickling.load(stream.getvalue(), buffers.getvalue(), spans), spans, buffers.getvalue()


def test_arrays_travel_out_of_band_aligned_and_come_back_equal_and_writable() -> None:
    value = _value()
    back, spans, blob = _round_trip(value)
    assert isinstance(back, dict)
    np.testing.assert_array_equal(back["dense"], value["dense"])
    assert (back["X"] != value["X"]).nnz == 0
    pd.testing.assert_frame_equal(back["frame"], value["frame"])
    np.testing.assert_array_equal(back["odd"], value["odd"])
    # the big buffers went to the buffer file, each at an aligned offset
    assert len(spans) >= 4 and all(offset % pickling.ALIGN == 0 for offset, _ in spans)
    assert sum(length for _, length in spans) >= value["dense"].nbytes + value["X"].data.nbytes
    # one object stays one object, and arrays can be updated in place as before saving
    assert back["again"] is back["dense"]
    back["dense"][0, 0] = 42.0
    back["X"].data[0] = 7.0
    assert back["dense"][0, 0] == 42.0 and back["X"].data[0] == 7.0
    assert blob.count(b"\0") < len(blob)  # the buffers hold the data, not just padding


def test_a_span_outside_the_buffer_file_is_refused() -> None:
    stream, buffers = io.BytesIO(), io.BytesIO()
    spans = pickling.dump(np.arange(100.0), stream, buffers)
    short = buffers.getvalue()[:-8]
    with pytest.raises(ValueError, match="outside the 792-byte buffer file"):
        pickling.load(stream.getvalue(), short, spans)


def test_save_object_writes_pickle5_by_default_and_joblib_when_compressed(tmp_path: Path) -> None:
    value = _value()
    plain = save_object(tmp_path / "plain", value)
    packed = save_object(tmp_path / "packed", value, compress=3)
    assert plain.content["format"] == "pickle5" and set(plain.files) == {"object", "buffers"}
    assert packed.content["format"] == "joblib" and set(packed.files) == {"object"}
    for name in ("plain", "packed"):
        back = load_object(tmp_path / name).value
        np.testing.assert_array_equal(back["dense"], value["dense"])
        pd.testing.assert_frame_equal(back["frame"], value["frame"])


def test_objects_written_before_the_format_field_still_load_as_joblib(tmp_path: Path) -> None:
    manifest = save_object(tmp_path / "o", {"a": np.arange(5)}, compress=1)
    doc = json.loads((tmp_path / "o" / MANIFEST).read_text())
    del doc["content"]["format"]  # what an artifact of an earlier release holds
    (tmp_path / "o" / MANIFEST).write_text(json.dumps(doc))
    np.testing.assert_array_equal(load_object(tmp_path / "o").value["a"], np.arange(5))
    assert manifest.files["object"].path.endswith("object.joblib")
    assert joblib.load(tmp_path / "o" / manifest.files["object"].path)["a"].sum() == 10


def test_an_unknown_object_format_names_the_ones_read(tmp_path: Path) -> None:
    save_object(tmp_path / "o", [1, 2])
    doc = json.loads((tmp_path / "o" / MANIFEST).read_text())
    doc["content"]["format"] = "cloudpickle"
    (tmp_path / "o" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="'cloudpickle'; this lester-dagster reads 'pickle5'"):
        load_object(tmp_path / "o")


def test_damaged_buffer_spans_are_an_artifact_error(tmp_path: Path) -> None:
    save_object(tmp_path / "o", {"a": np.arange(1000.0)})
    doc = json.loads((tmp_path / "o" / MANIFEST).read_text())
    doc["content"]["buffers"] = [[0, 10**9]]
    (tmp_path / "o" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="not a readable pickle5 object"):
        load_object(tmp_path / "o")
