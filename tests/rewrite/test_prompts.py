"""The rewrite prompts: the frame API is generated (complete, follows the code), the messages
carry the script, data and report intact, and the static module template matches the real
orchestration classes it describes."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import pytest

import lester_dagster.frame as frame_api
from lester_dagster.errors import RewriteError
from lester_dagster.rewrite import prompts
from lester_dagster.rewrite.client import LLMClient
from lester_dagster.rewrite.parse import code_blocks, extract_code
from lester_dagster.rewrite.prompts import (
    PROMPT_VERSION,
    frame_api_reference,
    load_prompt,
    prompt_digest,
    render,
    repair_messages,
    rewrite_messages,
)
from tests.rewrite.fake_openai import FakeOpenAI, load_script

SCRIPT = """import pandas as pd

mails = pd.read_csv("mails.csv")
mails["title_words"] = [len(s.lower()) for s in mails["subject"]]
"""
DATA = "mails.csv: 200 rows; mail_id (int64, unique: the key), subject (str)"


@pytest.fixture
def fresh_reference() -> Iterator[None]:
    """Clear the cached reference and digest before and after a test that changes the API."""
    frame_api_reference.cache_clear()
    prompt_digest.cache_clear()
    yield
    frame_api_reference.cache_clear()
    prompt_digest.cache_clear()


def public_members(cls: type) -> list[str]:
    """Public methods and properties (not dataclass fields)."""
    return [
        n
        for n, v in vars(cls).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, property))
    ]


def call_keywords(text: str, function: str) -> set[str]:
    """The keyword arguments of every call ``function(...)`` in ``text`` (top level of the
    call only: keywords of nested calls are not its own)."""
    found: set[str] = set()
    for match in re.finditer(rf"\b{function}\(", text):
        depth, own = 1, []
        for char in text[match.end() :]:
            depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
            if depth == 0:
                break
            own.append(char if depth == 1 else " ")
        found |= set(re.findall(r"\b([a-z_]+)=(?!=)", "".join(own)))
    return found


# -- the generated frame API ---------------------------------------------------------------------
def test_every_public_name_of_the_frame_api_is_stated() -> None:
    reference = frame_api_reference()
    system = rewrite_messages(SCRIPT, "mails", DATA)[0]["content"]
    for name in frame_api.__all__:
        assert f"`{name}" in reference, name
        assert f"`{name}" in system, name


def test_every_method_of_frame_groupby_expr_and_accessors_is_stated() -> None:
    reference = frame_api_reference()
    for cls, prefix in ((frame_api.Frame, "frame."), (frame_api.GroupBy, "grouped."),
                        (frame_api.Expr, "expr.")):  # fmt: skip
        for name in public_members(cls):
            assert f"`{prefix}{name}" in reference, f"{prefix}{name}"
    string_methods = type(frame_api.col("x").str)
    date_parts = type(frame_api.col("x").dt)
    for name in public_members(string_methods):
        assert f"`expr.str.{name}(" in reference, name
    for name in public_members(date_parts):
        assert f"`expr.dt.{name}" in reference, name


def test_signatures_and_docstrings_come_from_the_code() -> None:
    reference = frame_api_reference()
    for function in (frame_api.read_csv, frame_api.when, frame_api.Frame.with_column):
        for param in inspect.signature(function).parameters:
            if param != "self":
                assert param in reference
        first_line = (inspect.getdoc(function) or "").splitlines()[0]
        assert first_line.split("``")[0] in reference
    assert repr(frame_api.AGGREGATIONS) in reference
    assert "inputs: Sequence[str] | None = None" in reference  # with_column's UDF inputs
    assert "`frame.groupby`: the same as `frame.group_by`" in reference


def test_a_new_public_function_appears_without_editing_the_prompts(
    monkeypatch: pytest.MonkeyPatch, fresh_reference: None
) -> None:
    before = frame_api_reference()
    digest_before = prompt_digest()

    def explode(column: str, *, separator: str = ",") -> frame_api.Frame:
        """One row per separated value of ``column`` (a test stand-in)."""
        raise NotImplementedError

    monkeypatch.setattr(frame_api, "explode_values", explode, raising=False)
    monkeypatch.setattr(frame_api, "__all__", [*frame_api.__all__, "explode_values"])
    frame_api_reference.cache_clear()
    prompt_digest.cache_clear()
    after = frame_api_reference()
    assert "explode_values" not in before
    assert "`explode_values`" in after
    assert "One row per separated value" in after
    assert prompt_digest() != digest_before


def test_prompt_version_and_digest() -> None:
    assert isinstance(PROMPT_VERSION, str) and PROMPT_VERSION
    assert re.fullmatch(r"[0-9a-f]{12}", prompt_digest())


# -- files and rendering -------------------------------------------------------------------------
@pytest.mark.parametrize("name", prompts.PROMPT_FILES)
def test_prompt_files_load_without_their_maintainer_note(name: str) -> None:
    text = load_prompt(name)
    assert text.strip()
    assert "<!--" not in text
    assert "Placeholders:" not in text


def test_unknown_prompt_file() -> None:
    with pytest.raises(RewriteError, match=r"unknown prompt file 'nope\.md'"):
        load_prompt("nope.md")


def test_render_refuses_missing_and_unused_values() -> None:
    assert render("a {{x}} b {{ y }}", {"x": 1, "y": "two"}) == "a 1 b two"
    with pytest.raises(RewriteError, match=r"without a value \['y'\]"):
        render("{{x}} {{y}}", {"x": 1})
    with pytest.raises(RewriteError, match=r"without a placeholder \['z'\]"):
        render("{{x}}", {"x": 1, "z": 2})


# -- the rewrite messages ------------------------------------------------------------------------
def test_rewrite_messages_carry_script_name_data_and_rules() -> None:
    messages = rewrite_messages(SCRIPT, "mails", DATA, script_name="messy_mails.py")
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert SCRIPT.rstrip("\n") in user
    assert DATA in user
    assert "definitions/mails.py" in user
    assert 'name="mails"' in user
    assert "messy_mails.py" in user
    assert 'DATA_DIR = Path("data/mails")' in user
    assert "{{" not in system + user
    assert "exactly one ```python" in system
    for stage in ("join", "filter", "group_by", "ColumnTransformer", "label", "UDF"):
        assert stage in system
    for name in ("LesterPipeline", "SourceSpec", "SplitSpec", "LABEL_INPUTS"):
        assert name in user


def test_the_prompt_allows_exactly_the_static_checks_imports() -> None:
    from lester_dagster.rewrite.validate import ALLOWED_MODULES

    system = rewrite_messages(SCRIPT, "mails", DATA)[0]["content"]
    stated = re.search(r"Import only from: (.*?)\. ", system)
    assert stated is not None
    assert set(re.findall(r"`([^`]+)`", stated.group(1))) == set(ALLOWED_MODULES)


def test_allowed_imports_and_data_dir_are_stated_as_given() -> None:
    messages = rewrite_messages(
        SCRIPT, "mails", DATA, data_dir="/srv/data", allowed_imports=("pandas", "vaderSentiment")
    )
    assert "Import only from: `pandas`, `vaderSentiment`." in messages[0]["content"]
    assert 'DATA_DIR = Path("/srv/data")' in messages[1]["content"]


def test_script_with_fences_and_placeholders_is_kept_verbatim() -> None:
    tricky = 'DOC = """\n```python\nprint({{frame_api}})\n```\n"""\n'
    user = rewrite_messages(tricky, "tricky", DATA)[1]["content"]
    assert tricky.rstrip("\n") in user
    assert "````python\n" + tricky.rstrip("\n") + "\n````" in user  # a longer fence around it


@pytest.mark.parametrize(("script", "name"), [("", "ok"), ("x = 1", "9lives"), ("x = 1", "a-b")])
def test_rewrite_messages_refuse_empty_scripts_and_bad_names(script: str, name: str) -> None:
    with pytest.raises(RewriteError):
        rewrite_messages(script, name, DATA)


def test_the_module_template_uses_the_real_orchestration_parameters() -> None:
    """The template is static text (the rewrite package may not import orchestration); this
    test may, and checks every keyword the template uses against the real classes."""
    from lester_dagster.orchestration import LesterPipeline, SourceSpec, SplitSpec

    template = load_prompt("module_template.md")
    for cls in (LesterPipeline, SourceSpec, SplitSpec):
        used = call_keywords(template, cls.__name__)
        fields = set(inspect.signature(cls).parameters)
        assert used, cls.__name__
        assert used <= fields, (cls.__name__, used - fields)
    assert {"name", "sources", "prepare", "split", "features", "label", "model"} <= (
        call_keywords(template, "LesterPipeline")
    )


def filled_template(name: str = "demo") -> str:
    """The template's code block with its <placeholders> filled in plausibly."""
    template = render(
        load_prompt("module_template.md"),
        {"name": name, "data_dir": "data/demo", "script_name": "messy.py"},
    )
    (block,) = [b for b in code_blocks(template) if b.language == "python"]
    code = block.code.replace("<source_a>", "customers").replace("<source_b>", "mails")
    return re.sub(r"\(<[^<>]*>\)", "()", code)  # LogisticRegression(<the script's parameters>)


def test_the_module_template_passes_the_static_check() -> None:
    from lester_dagster.rewrite.validate import check_code

    assert check_code(filled_template(), required_names=("pipeline",)) == []


def test_the_module_template_builds_a_real_pipeline() -> None:
    """Executing the filled-in template defines a valid LesterPipeline (which checks prepare's
    parameters against the sources and calls the feature and model factories)."""
    from lester_dagster.orchestration import LesterPipeline

    namespace: dict[str, object] = {"__name__": "demo_module"}
    exec(compile(filled_template(), "<template>", "exec"), namespace)
    pipeline = namespace["pipeline"]
    assert isinstance(pipeline, LesterPipeline)
    assert pipeline.name == "demo"
    assert set(pipeline.sources) == {"customers", "mails"}
    assert pipeline.split.by == "customers"


# -- repair messages -----------------------------------------------------------------------------
def test_repair_messages_append_the_code_and_the_report() -> None:
    first = rewrite_messages(SCRIPT, "mails", DATA)
    code = 'x = "```"\n'
    report = "X_train differs in column title_words, rows [3, 7]: 12 != 3"
    messages = repair_messages(first, code, report)
    assert messages[:2] == first
    assert [m["role"] for m in messages[2:]] == ["assistant", "user"]
    assert extract_code(messages[2]["content"]) == code  # the answer round-trips
    assert report in messages[3]["content"]
    assert "attempt 1" in messages[3]["content"]
    again = repair_messages(messages, "x = 2\n", "still wrong")
    assert len(again) == 6
    assert "attempt 2" in again[5]["content"]
    assert "attempt 7" in repair_messages(first, "y = 1\n", "r", attempt=7)[3]["content"]


def test_repair_messages_need_history_and_a_report() -> None:
    with pytest.raises(RewriteError, match="system message"):
        repair_messages([{"role": "user", "content": "hi"}], "x = 1\n", "report")
    with pytest.raises(RewriteError, match="failure report"):
        repair_messages(rewrite_messages(SCRIPT, "m", DATA), "x = 1\n", "  ")


# -- over HTTP -----------------------------------------------------------------------------------
def test_a_rewrite_and_a_repair_round_over_http(fake_openai: FakeOpenAI) -> None:
    steps = load_script("prompts_repair_round")
    fake_openai.play(steps)
    client = LLMClient(model="coder", base_url=fake_openai.base_url)

    messages = rewrite_messages(SCRIPT, "mails", DATA)
    first = extract_code(client.complete(messages).text)
    report = "title_words differs: the script counts characters, the module words? rows 0-4"
    repair = repair_messages(messages, first, report)
    second = extract_code(client.model_copy(update={"stream": True}).complete(repair).text)

    assert steps[0].content is not None and first in steps[0].content
    assert steps[1].content is not None and second in steps[1].content
    sent_first, sent_repair = fake_openai.completions
    assert sent_first.messages == messages
    assert sent_repair.messages == repair
    assert sent_repair.stream is True
    assert first in sent_repair.messages[2]["content"]
    assert report in sent_repair.messages[3]["content"]
