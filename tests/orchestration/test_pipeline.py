"""The pipeline declaration is validated when it is defined, with messages that say how to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lester_dagster.errors import LesterError, PlanError, UnknownSourceError
from lester_dagster.examples.complaints import feature_encoding, label, model, prepare_frames
from lester_dagster.frame import Frame
from lester_dagster.orchestration import LesterPipeline, SourceSpec, SplitSpec, Step

SOURCES = {
    "customers": SourceSpec("c.csv", key="customer_id"),
    "mails": SourceSpec("m.csv", key="mail_id"),
}


def make(**overrides: Any) -> LesterPipeline:
    spec: dict[str, Any] = {
        "name": "complaints",
        "sources": SOURCES,
        "prepare": prepare_frames,
        "split": SplitSpec(by="customers"),
        "features": feature_encoding,
        "label": label,
        "model": model,
    }
    spec.update(overrides)
    return LesterPipeline(**spec)


def test_the_running_example_declares_its_steps() -> None:
    pipeline = make()
    assert [s.name for s in pipeline.steps] == [
        "customers", "mails", "complaints", "train", "test", "X_train", "y_train", "model",
        "X_test", "y_test",
    ]  # fmt: skip
    assert pipeline.parents(pipeline.step("prepared")) == (
        Step("source", "customers"),
        Step("source", "mails"),
    )
    assert pipeline.parents(pipeline.step("X_test")) == (
        Step("test", "test"),
        Step("model", "model"),
    )


def test_a_prepare_parameter_must_name_a_source() -> None:
    def prep(customers: Frame, emails: Frame) -> Frame:
        return customers

    with pytest.raises(PlanError, match=r"parameter 'emails'.*no source of that name.*'mails'"):
        make(prepare=prep)


def test_every_source_must_reach_prepare() -> None:
    def prep(customers: Frame) -> Frame:
        return customers

    with pytest.raises(PlanError, match=r"'mails' are not parameters of prepare\(\)"):
        make(prepare=prep)


def test_prepare_may_take_the_sources_as_keyword_arguments() -> None:
    def prep(**frames: Frame) -> Frame:
        return frames["mails"]

    assert make(prepare=prep).takes_all_sources


def test_positional_only_parameters_are_rejected() -> None:
    def prep(customers: Frame, mails: Frame, /) -> Frame:
        return mails

    with pytest.raises(PlanError, match="positional-only"):
        make(prepare=prep)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.2"])
def test_test_fraction_must_lie_strictly_between_0_and_1(fraction: Any) -> None:
    with pytest.raises(PlanError, match="strictly between 0 and 1"):
        SplitSpec(by="customers", test_fraction=fraction)


def test_the_split_source_must_exist() -> None:
    with pytest.raises(UnknownSourceError, match=r"unknown source 'users'.*'customers'"):
        make(split=SplitSpec(by="users"))


def test_source_specs_are_checked() -> None:
    with pytest.raises(PlanError, match=r"format must be one of \['csv', 'parquet', 'json'\]"):
        SourceSpec("x.xlsx", format="excel")
    with pytest.raises(PlanError, match="key must be a column name"):
        SourceSpec("x.csv", key=["id", 3])  # type: ignore[list-item]
    with pytest.raises(PlanError, match="a function of no arguments"):
        SourceSpec("x.csv", generate="write it")  # type: ignore[arg-type]
    assert SourceSpec(Path("x.csv"), key=("a", "b")).key_columns == ("a", "b")


@pytest.mark.parametrize("name", ["train", "X_test", "complaints"])
def test_source_names_may_not_clash_with_step_assets(name: str) -> None:
    def prep(**frames: Frame) -> Frame:
        return next(iter(frames.values()))

    with pytest.raises(PlanError, match="clashes with the asset of another pipeline step"):
        make(sources={name: SourceSpec("x.csv")}, prepare=prep, split=SplitSpec(by=name))


@pytest.mark.parametrize("name", ["my pipeline", "1st", "", "a-b"])
def test_names_must_be_asset_key_safe(name: str) -> None:
    with pytest.raises(PlanError, match="letters, digits and underscores"):
        make(name=name)


def test_factories_must_make_sklearn_objects() -> None:
    with pytest.raises(PlanError, match="must return an unfitted sklearn ColumnTransformer"):
        make(features=lambda: "not an encoder")
    with pytest.raises(PlanError, match=r"model\(\) must return an unfitted scikit-learn"):
        make(model=lambda: object())
    with pytest.raises(PlanError, match=r"features\(\) failed: ZeroDivisionError"):
        make(features=lambda: 1 / 0)


def test_label_inputs_must_be_column_names() -> None:
    with pytest.raises(PlanError, match="label_inputs must be a list of column names"):
        make(label_inputs="sentiment")
    assert make(label_inputs=["sentiment"]).label_inputs == ("sentiment",)


def test_errors_are_lester_errors_and_value_errors() -> None:
    with pytest.raises(LesterError):
        make(sources={})
    with pytest.raises(ValueError):
        make(split="customers")


def test_a_glob_pattern_or_a_directory_is_a_multi_file_source(tmp_path: Path) -> None:
    for pattern in ("data/mails-*.csv", "data/mails-202?.csv", "data/mails-[0-9].csv"):
        spec = SourceSpec(pattern, key="mail_id")
        assert spec.pattern and spec.multi_file, pattern
    assert SourceSpec(tmp_path).multi_file and not SourceSpec(tmp_path).pattern
    single = SourceSpec(tmp_path / "mails.csv")
    assert not single.multi_file and not single.pattern
    (tmp_path / "mails.csv").write_text("mail_id\n1\n")
    assert not single.multi_file
