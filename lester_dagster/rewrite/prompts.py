"""The rewrite's prompts: message lists for the first request and for each repair.

The texts live in ``lester_dagster/rewrite/prompts/*.md`` (package data, read with
:mod:`importlib.resources`): ``system.md`` (role, stage mapping, rules, the frame API),
``module_template.md`` (the shape of a pipeline module), ``rewrite.md`` (the script and its
data) and ``repair.md`` (a failed check's report). Placeholders are ``{{name}}``; each file may
start with an HTML comment for maintainers, which is not sent.

The frame API in the system prompt is **generated** by :func:`frame_api_reference` from the
signatures and docstrings of ``lester_dagster.frame.__all__``, so it cannot drift from the code.
The module template is static text on purpose: this package may import ``lester_dagster.frame``
and ``lester_dagster.errors`` only (import-linter), not the orchestration it describes.

::

    messages = rewrite_messages(script, "complaints", data_description)
    reply = client.complete(messages)                       # LLMClient
    code = extract_code(reply.text)                         # parse.py
    ... a check fails with `report` ...
    messages = repair_messages(messages, code, report, attempt=1)
"""

from __future__ import annotations

import hashlib
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import lester_dagster.frame as frame_api
from lester_dagster.errors import RewriteError
from lester_dagster.rewrite.validate import ALLOWED_MODULES

__all__ = [
    "DEFAULT_ALLOWED_IMPORTS",
    "PROMPT_FILES",
    "PROMPT_VERSION",
    "frame_api_reference",
    "load_prompt",
    "prompt_digest",
    "render",
    "repair_messages",
    "rewrite_messages",
]

PROMPT_VERSION = "1"
"""Bump when the meaning of a prompt changes; generated modules record it in their header
(with :func:`prompt_digest`, which changes with any edit of the texts or the frame API)."""

PROMPT_FILES = ("system.md", "module_template.md", "rewrite.md", "repair.md")

DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = tuple(sorted(ALLOWED_MODULES))
"""The modules the prompt tells the model it may import (submodules included): the static
check's allow-list (:data:`lester_dagster.rewrite.validate.ALLOWED_MODULES`), so the prompt
and the check cannot disagree."""

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MAINTAINER_NOTE = re.compile(r"\A\s*<!--.*?-->\s*\n", re.DOTALL)
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :class:`~x.Frame` -> Frame

# the sections of the reference: names of frame.__all__ meant for pipeline modules, in order
_SOURCES = ("read_csv", "read_parquet", "read_json", "from_pandas")
_PLANS = ("Frame", "GroupBy")
_EXPRESSIONS = ("col", "lit", "when", "Expr", "AGGREGATIONS")
_OPERATORS = {
    "__add__": "+", "__sub__": "-", "__mul__": "*", "__truediv__": "/", "__floordiv__": "//",
    "__mod__": "%", "__pow__": "**", "__eq__": "==", "__ne__": "!=", "__lt__": "<",
    "__le__": "<=", "__gt__": ">", "__ge__": ">=", "__and__": "& (and)", "__or__": "| (or)",
    "__invert__": "~ (not)", "__neg__": "- (negation)",
}  # fmt: skip


# -- files and rendering -------------------------------------------------------------------------
@cache
def load_prompt(name: str) -> str:
    """The text of prompt file ``name`` (one of :data:`PROMPT_FILES`), without its leading
    maintainer comment."""
    if name not in PROMPT_FILES:
        raise RewriteError(f"unknown prompt file {name!r}; the prompt files are {PROMPT_FILES}")
    path = resources.files("lester_dagster.rewrite").joinpath("prompts", name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RewriteError(
            f"prompt file {name} is missing from the installed package ({path}); reinstall "
            "lester-dagster (the prompts ship as package data: [tool.setuptools.package-data])"
        ) from exc
    return _MAINTAINER_NOTE.sub("", text, count=1)


def render(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each ``{{name}}`` replaced by ``values[name]`` in one pass (values are
    not scanned again, so a script containing ``{{x}}`` stays as it is). Every placeholder needs a
    value and every value a placeholder: a mismatch is a :class:`RewriteError`."""
    used = set(_PLACEHOLDER.findall(template))
    missing = sorted(used - set(values))
    unused = sorted(set(values) - used)
    if missing or unused:
        raise RewriteError(
            f"prompt template and values disagree: placeholders without a value {missing}, "
            f"values without a placeholder {unused}; edit the template or the caller"
        )
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# -- the generated frame API reference -----------------------------------------------------------
def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return ""
    text = value if isinstance(value, str) else inspect.formatannotation(value)
    return re.sub(r"\b(?:typing|collections\.abc|lester_dagster\.frame\.\w+)\.", "", text)


def _signature(function: Callable[..., Any], name: str, skip_self: bool) -> str:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return f"{name}(...)"
    parts: list[str] = []
    star_done = False
    for index, param in enumerate(signature.parameters.values()):
        if skip_self and index == 0 and param.name in ("self", "cls"):
            continue
        annotation = _annotation(param.annotation)
        text = param.name + (f": {annotation}" if annotation else "")
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}" if annotation else f"={param.default!r}"
        if param.kind is param.VAR_POSITIONAL:
            text, star_done = "*" + text, True
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        elif param.kind is param.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        parts.append(text)
    returns = _annotation(signature.return_annotation)
    return f"{name}({', '.join(parts)})" + (f" -> {returns}" if returns else "")


def _doc(obj: Any, indent: str = "    ", first_paragraph: bool = False) -> str:
    doc = inspect.getdoc(obj) or ""
    if first_paragraph:
        doc = doc.split("\n\n")[0]
    doc = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], doc)
    return "\n".join(indent + line if line else "" for line in doc.splitlines())


def _entry(signature: str, obj: Any, indent: str = "") -> list[str]:
    lines = [f"{indent}- `{signature}`"]
    doc = _doc(obj, indent + "  ")
    if doc:
        lines.append(doc)
    return lines


def _accessor_class(prop: property) -> type | None:
    """The class a property returns (``Expr.str`` -> the string-method class), if any."""
    if prop.fget is None:
        return None
    try:
        hints = typing.get_type_hints(prop.fget)
    except Exception:
        return None
    returned = hints.get("return")
    return returned if isinstance(returned, type) else None


def _members(cls: type, prefix: str, indent: str = "") -> list[str]:
    """Public methods and properties of ``cls`` in definition order; aliases noted once."""
    lines: list[str] = []
    seen: dict[int, str] = {}
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            accessor = _accessor_class(member)
            if (
                accessor is not None
                and accessor is not cls
                and accessor.__name__.startswith("_")  # the .str / .dt method holders
                and accessor.__module__.startswith("lester_dagster.frame")
            ):
                lines.append(f"{indent}- `{prefix}{name}`: {_doc(member, '').strip()}")
                lines += _members(accessor, f"{prefix}{name}.", indent + "  ")
                continue
            returns = _annotation(typing.get_type_hints(member.fget).get("return", "")) if (
                member.fget is not None
            ) else ""  # fmt: skip
            lines += _entry(
                f"{prefix}{name}" + (f" -> {returns}" if returns else ""), member, indent
            )
        elif callable(member):
            if id(member) in seen:
                lines.append(f"{indent}- `{prefix}{name}`: the same as `{seen[id(member)]}`")
                continue
            seen[id(member)] = f"{prefix}{name}"
            lines += _entry(_signature(member, f"{prefix}{name}", skip_self=True), member, indent)
    return lines


def _section_entry(name: str) -> list[str]:
    obj = getattr(frame_api, name)
    if inspect.isclass(obj):
        lines = [f"### class `{name}`", "", _doc(obj, ""), ""]
        prefix = "frame." if name == "Frame" else ("grouped." if name == "GroupBy" else "expr.")
        lines += _members(obj, prefix)
        if name == "Expr":
            operators = [f"`{s}`" for d, s in _OPERATORS.items() if d in vars(obj)]
            lines += ["", "Operators on expressions (each builds a new expression): "]
            lines[-1] += ", ".join(operators) + ". Wrap each comparison in parentheses when "
            lines[-1] += "combining: `(col('a') > 1) & (col('b') == 'x')`."
        return [*lines, ""]
    if callable(obj):
        return [*_entry(_signature(obj, name, skip_self=False), obj), ""]
    return [f"- `{name} = {obj!r}`", ""]


@lru_cache(maxsize=1)
def frame_api_reference() -> str:
    """The public API of :mod:`lester_dagster.frame` as Markdown, generated from its
    ``__all__``, signatures and docstrings: sources, Frame and GroupBy methods, expressions
    (``col``, ``lit``, ``when``, ``Expr`` methods with the ``.str`` / ``.dt`` accessors, the
    operators) and ``AGGREGATIONS``; the other exported names in one line each."""
    public = list(frame_api.__all__)
    core = (*_SOURCES, *_PLANS, *_EXPRESSIONS)
    lines = ["## Module docstring", "", _doc(frame_api, ""), "", "## Sources", ""]
    for name in _SOURCES:
        lines += _section_entry(name)
    lines += ["## Plans", ""]
    for name in _PLANS:
        lines += _section_entry(name)
    lines += ["## Expressions", ""]
    for name in _EXPRESSIONS:
        if name == "AGGREGATIONS":
            lines += [f"- `AGGREGATIONS = {frame_api.AGGREGATIONS!r}`: the functions "
                      "`GroupBy.agg` accepts.", ""]  # fmt: skip
        elif name != "Expr":
            lines += _section_entry(name)
    lines += _section_entry("Expr")
    others = [n for n in public if n not in core]
    if others:
        lines += [
            "## Also exported (used by the framework; not needed in a pipeline module)",
            "",
        ]
        for name in others:
            obj = getattr(frame_api, name)
            summary = (
                _doc(obj, "", first_paragraph=True).replace("\n", " ")
                if callable(obj)
                else repr(obj)
            )
            lines.append(f"- `{name}`: {summary}")
    return "\n".join(lines).strip() + "\n"


@lru_cache(maxsize=1)
def prompt_digest() -> str:
    """12 hex digits of a SHA-256 over the prompt files and the generated frame API: any edit
    of either changes it (record it with :data:`PROMPT_VERSION`)."""
    digest = hashlib.sha256()
    for name in PROMPT_FILES:
        digest.update(load_prompt(name).encode())
    digest.update(frame_api_reference().encode())
    return digest.hexdigest()[:12]


# -- messages ------------------------------------------------------------------------------------
def system_prompt(allowed_imports: Sequence[str] = DEFAULT_ALLOWED_IMPORTS) -> str:
    """The system message: role, stages, rules and the generated frame API."""
    return render(
        load_prompt("system.md"),
        {
            "allowed_imports": ", ".join(f"`{m}`" for m in allowed_imports),
            "frame_api": frame_api_reference(),
        },
    ).strip()


def rewrite_messages(
    script_text: str,
    name: str,
    data_description: str,
    *,
    script_name: str = "messy.py",
    data_dir: str | None = None,
    allowed_imports: Sequence[str] = DEFAULT_ALLOWED_IMPORTS,
) -> list[dict[str, str]]:
    """The messages of the first request: the system prompt, then the module template, the data
    and the script.

    ``name``: the pipeline's name (``definitions/<name>.py``); ``data_description``: the source
    files with their columns, types, a few rows and their keys (as confirmed against the data);
    ``script_name``: how the script is called in the prompt; ``data_dir``: the directory the
    generated ``DATA_DIR`` points at (default ``data/<name>``); ``allowed_imports``: the static
    check's allow-list, as the prompt states it.
    """
    if not isinstance(script_text, str) or not script_text.strip():
        raise RewriteError(f"the script to rewrite is empty ({script_name}); pass its source text")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise RewriteError(
            f"pipeline name must be letters, digits and underscores, not starting with a digit "
            f"(it becomes definitions/<name>.py and a Dagster group), got {name!r}"
        )
    template = render(
        load_prompt("module_template.md"),
        {"name": name, "data_dir": data_dir or f"data/{name}", "script_name": script_name},
    )
    user = render(
        load_prompt("rewrite.md"),
        {
            "script_name": script_name,
            "name": name,
            "module_template": template.strip(),
            "data_description": data_description.strip() or "(no description of the data)",
            "fence": _fence(script_text),
            "script": script_text.rstrip("\n"),
        },
    )
    return [
        {"role": "system", "content": system_prompt(allowed_imports)},
        {"role": "user", "content": user.strip()},
    ]


def repair_messages(
    previous_messages: Sequence[Mapping[str, str]],
    code: str,
    failure_report: str,
    *,
    attempt: int | None = None,
) -> list[dict[str, str]]:
    """The messages of a repair request: ``previous_messages`` (those of the request that
    produced ``code``), then ``code`` as the assistant's answer, then the ``failure_report``
    (a refused import, an exception, a differential-check diff) with the request to fix it.
    ``attempt`` numbers the failed answer in the prompt (default: the answers so far + 1)."""
    history = [{"role": str(m["role"]), "content": str(m["content"])} for m in previous_messages]
    if not history or history[0]["role"] != "system":
        raise RewriteError(
            "repair_messages() needs the messages of the previous request, starting with the "
            "system message (as returned by rewrite_messages or repair_messages)"
        )
    if not failure_report.strip():
        raise RewriteError("repair_messages() needs the failure report of the check that failed")
    if attempt is None:
        attempt = sum(1 for m in history if m["role"] == "assistant") + 1
    fence = _fence(code)
    answer = f"{fence}python\n{code.rstrip()}\n{fence}"
    report = failure_report.strip()
    user = render(
        load_prompt("repair.md"),
        {"attempt": attempt, "fence": _fence(report), "failure_report": report},
    )
    return [
        *history,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": user.strip()},
    ]
