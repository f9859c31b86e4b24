"""Reading the model's reply: the one Python code block it must contain, checked to parse.

The prompts ask for exactly one fenced ```python block. :func:`extract_code` is tolerant where
tolerance is safe (```py, ```python3, ```Python, a fence with no language when it is the only
block, ``~~~`` fences, text around the block, Windows line ends) and strict where guessing could
pick the wrong code: several Python blocks, no block, or a block that is never closed (a reply cut
at the token limit) raise :class:`~lester_dagster.errors.GeneratedCodeError`, with a message
written so it can go back to the model in a repair prompt as is.

:func:`check_syntax` parses the code with :func:`ast.parse`; a syntax error names the line, the
column and shows the offending line with a caret.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from lester_dagster.errors import GeneratedCodeError

__all__ = ["PYTHON_TAGS", "CodeBlock", "check_syntax", "code_blocks", "extract_code"]

PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})
"""Info strings of a fence that mark Python (compared lower-case)."""

_OPEN = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block of a reply: its language tag (lower-case, ``""`` if none), its text,
    the reply line it starts on (1-based) and whether its closing fence was found."""

    language: str
    code: str
    line: int
    closed: bool = True


def code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced code block of ``text`` (Markdown fences of three or more backticks or
    tildes; a block ends at a fence of the same character at least as long)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if match is None:
            i += 1
            continue
        fence = match["fence"]
        words = match["info"].strip().split()
        language = words[0].lower().strip("{}.") if words else ""
        closing = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j])
            j += 1
        closed = j < len(lines)
        code = "\n".join(body)
        blocks.append(CodeBlock(language, code + "\n" if code else "", i + 1, closed))
        i = j + 1
    return blocks


def extract_code(text: str) -> str:
    """The Python code of the reply ``text``: its single ```python block (or its only fenced
    block, if that one has no language tag), checked by :func:`check_syntax`.

    Raises :class:`GeneratedCodeError` when there is no such block, several of them, the block
    is not closed, is empty, or does not parse.
    """
    if not isinstance(text, str):
        raise GeneratedCodeError(f"the reply must be text, got {type(text).__name__}")
    blocks = code_blocks(text)
    python = [b for b in blocks if b.language in PYTHON_TAGS]
    if not python and len(blocks) == 1 and blocks[0].language == "":
        python = blocks
    if not python:
        if blocks:
            tags = ", ".join(repr(b.language or "(none)") for b in blocks)
            raise GeneratedCodeError(
                f"the reply has {len(blocks)} code block(s) but none marked as Python (languages: "
                f"{tags}); answer with the whole module in one ```python block"
            )
        raise GeneratedCodeError(
            "the reply has no code block; answer with the whole module in one ```python block "
            f"and nothing else (the reply began: {_start(text)!r})"
        )
    if len(python) > 1:
        starts = ", ".join(str(b.line) for b in python)
        raise GeneratedCodeError(
            f"the reply has {len(python)} Python code blocks (starting on lines {starts}); "
            "answer with the whole module in exactly one ```python block"
        )
    (block,) = python
    if not block.closed:
        raise GeneratedCodeError(
            f"the Python code block starting on line {block.line} of the reply is never closed "
            "with ```; the reply was probably cut at the token limit (raise max_tokens, or "
            "write a shorter module)"
        )
    if not block.code.strip():
        raise GeneratedCodeError(
            f"the Python code block on line {block.line} of the reply is empty; answer with "
            "the whole module in it"
        )
    check_syntax(block.code)
    return block.code


def check_syntax(code: str, filename: str = "<generated module>") -> ast.Module:
    """The syntax tree of ``code``; a :class:`GeneratedCodeError` naming the line, the column and
    the offending line if it does not parse."""
    try:
        return ast.parse(code, filename=filename)
    except SyntaxError as exc:
        line = exc.lineno or 0
        column = exc.offset or 0
        lines = code.splitlines()
        source = lines[line - 1] if 0 < line <= len(lines) else (exc.text or "").rstrip("\n")
        caret = " " * max(column - 1, 0) + "^"
        raise GeneratedCodeError(
            f"the generated code does not parse: {exc.msg} at line {line}, column {column} of "
            f"{filename}:\n    {source}\n    {caret}\nfix the syntax and answer with the whole "
            "module again"
        ) from exc
    except ValueError as exc:  # e.g. null bytes in the source
        raise GeneratedCodeError(f"the generated code cannot be parsed: {exc}") from exc


def _start(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
