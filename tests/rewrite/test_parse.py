"""extract_code / check_syntax: the one Python block of a reply, refused with a useful message
when it is missing, ambiguous, cut off or does not parse."""

from __future__ import annotations

import ast

import pytest

from lester_dagster.errors import GeneratedCodeError
from lester_dagster.rewrite.client import LLMClient
from lester_dagster.rewrite.parse import check_syntax, code_blocks, extract_code
from tests.rewrite.fake_openai import FakeOpenAI, Step, load_script

MODULE = (
    "from lester_dagster.frame import col\n\n\n"
    "def keep(frame):\n"
    '    return frame.filter(col("x") > 1)\n'
)


def fenced(code: str, tag: str = "python", fence: str = "```") -> str:
    return f"{fence}{tag}\n{code}{fence}\n"


@pytest.mark.parametrize("tag", ["python", "py", "python3", "Python", "PY3", ""])
def test_one_block_with_any_python_tag(tag: str) -> None:
    reply = f"Sure, here is the module:\n\n{fenced(MODULE, tag)}\nIt filters rows."
    assert extract_code(reply) == MODULE


def test_tilde_fences_indented_fences_and_windows_line_ends() -> None:
    assert extract_code(fenced(MODULE, fence="~~~")) == MODULE
    indented = "  ```python\n" + MODULE + "  ```\n"
    assert extract_code(indented) == MODULE
    assert extract_code(fenced(MODULE).replace("\n", "\r\n")) == MODULE


def test_a_longer_fence_keeps_shorter_fences_inside() -> None:
    code = 'DOC = """\n```\nnot a fence end\n"""\n'
    assert extract_code(fenced(code, fence="````")) == code


def test_python_block_is_chosen_among_blocks_of_other_languages() -> None:
    reply = fenced("pip install lester-dagster\n", "bash") + fenced(MODULE) + fenced("{}\n", "json")
    assert extract_code(reply) == MODULE


def test_no_block_is_refused_and_the_reply_start_quoted() -> None:
    with pytest.raises(GeneratedCodeError, match="no code block") as caught:
        extract_code("I cannot rewrite this script because it is too imperative.")
    assert "I cannot rewrite" in str(caught.value)
    assert "```python" in str(caught.value)


def test_only_blocks_of_other_languages() -> None:
    with pytest.raises(GeneratedCodeError, match="none marked as Python"):
        extract_code(fenced("ls\n", "bash") + fenced("x = 1\n", "text"))


def test_several_python_blocks_are_refused_with_their_lines() -> None:
    reply = "First:\n" + fenced("a = 1\n") + "Then:\n" + fenced("b = 2\n", "py")
    with pytest.raises(GeneratedCodeError, match="2 Python code blocks") as caught:
        extract_code(reply)
    assert "lines 2, 6" in str(caught.value)
    assert "exactly one" in str(caught.value)


def test_two_untagged_blocks_are_not_guessed() -> None:
    with pytest.raises(GeneratedCodeError, match="none marked as Python"):
        extract_code(fenced("a = 1\n", "") + fenced("b = 2\n", ""))


def test_unclosed_block_says_the_reply_was_cut() -> None:
    with pytest.raises(GeneratedCodeError, match="never closed") as caught:
        extract_code("```python\n" + MODULE)
    assert "token limit" in str(caught.value)


def test_empty_block() -> None:
    with pytest.raises(GeneratedCodeError, match="empty"):
        extract_code("```python\n\n```\n")


def test_syntax_error_names_line_column_and_shows_the_line() -> None:
    code = "import pandas as pd\n\ndef prepare(frame)\n    return frame\n"
    with pytest.raises(GeneratedCodeError) as caught:
        extract_code(fenced(code))
    message = str(caught.value)
    assert "line 3" in message
    assert "def prepare(frame)" in message
    assert "^" in message
    assert isinstance(caught.value, ValueError)


def test_check_syntax_returns_the_tree() -> None:
    tree = check_syntax(MODULE)
    assert isinstance(tree, ast.Module)
    assert [type(node).__name__ for node in tree.body] == ["ImportFrom", "FunctionDef"]


def test_code_blocks_reports_language_line_and_closed() -> None:
    blocks = code_blocks("intro\n```py\nx = 1\n```\n\n~~~\nopen")
    assert [(b.language, b.line, b.closed) for b in blocks] == [("py", 2, True), ("", 6, False)]
    assert blocks[0].code == "x = 1\n"


def test_a_reply_received_over_http_parses(fake_openai: FakeOpenAI) -> None:
    fake_openai.play_file("client_rate_limited")
    reply = load_script("client_rate_limited")[1].content
    assert reply is not None
    completion = LLMClient(model="m", base_url=fake_openai.base_url, backoff=0.01).complete(
        [{"role": "user", "content": "rewrite"}]
    )
    code = extract_code(completion.text)
    assert code in reply
    assert "def prepare(mails: Frame) -> Frame:" in code
    check_syntax(code)


def test_a_streamed_reply_with_a_syntax_error_is_refused(fake_openai: FakeOpenAI) -> None:
    fake_openai.play([Step.reply(fenced("def broken(:\n    pass\n"))])
    client = LLMClient(model="m", base_url=fake_openai.base_url, stream=True)
    text = client.complete([{"role": "user", "content": "rewrite"}]).text
    with pytest.raises(GeneratedCodeError, match="line 1"):
        extract_code(text)
