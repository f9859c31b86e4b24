"""Static checks of generated pipeline code, before it ever runs.

:func:`check_code` parses the code and walks its syntax tree against an **allow-list**; it
returns every :class:`Violation` (line, column, rule, message, offending source line);
:func:`validate` raises :class:`~lester_dagster.errors.GeneratedCodeError` listing them all.

The policy (what a pipeline module needs, nothing more):

* **imports** only of :data:`ALLOWED_MODULES` (and their submodules): ``__future__``,
  ``typing``, ``collections`` (and ``.abc``), ``dataclasses``, ``functools``, ``math``, ``re``,
  ``string``, ``datetime``, ``pathlib`` (``Path`` / ``PurePath`` only, for source file names),
  ``numpy``, ``pandas``, ``scipy.sparse``, ``sklearn.{preprocessing, compose,
  feature_extraction, linear_model, naive_bayes, pipeline, impute}``,
  ``vaderSentiment.vaderSentiment``, ``lester_dagster.frame`` (its public names only) and
  ``lester_dagster.orchestration`` (only ``LesterPipeline``, ``SourceSpec``, ``SplitSpec``).
  No ``from x import *``, no relative imports. An attribute chain on an imported module
  (``scipy.io.savemat`` after ``import scipy.sparse``) must stay inside the allow-list.
* **no dynamic code or introspection**: the names ``__import__``, ``eval``, ``exec``,
  ``compile``, ``open``, ``input``, ``breakpoint``, ``globals``, ``locals``, ``vars``,
  ``setattr``, ``delattr``, ``exit``, ``quit``, ``help`` are refused wherever they appear (also
  uncalled, so ``f = eval`` fails); ``getattr`` only with a literal, non-dunder, allowed
  attribute name; no dunder attribute (``x.__class__``, ``f.__globals__`` ...; only
  ``__init__``, ``__name__``, ``__doc__``), no dunder names other than ``__name__``,
  ``__all__``, ``__doc__``, ``__file__``, no dunder inside string literals (format-string
  tricks such as ``"{0.__class__}"``).
* **no file, network or process access** outside the declared sources: sources are declared
  with ``SourceSpec`` and read by the pipeline, so file IO is refused whatever the receiver:
  NumPy / pandas / SciPy readers and writers (``np.save``, ``np.load``, ``np.loadtxt``,
  ``pd.read_*``, ``pd.read_pickle``, ``scipy.sparse.save_npz`` ...), writer and file methods
  (``.to_csv``, ``.to_pickle``, ``.to_parquet``, ``.tofile``, ``.read_text``, ``.write_text``,
  ``.open``, ``.unlink``, ``.mkdir``, ``.glob`` ...), ``.eval`` / ``.query`` (pandas'
  expression evaluator); URL literals (``http://``, ``file://`` ...) are refused, and absolute
  or parent-escaping path literals (``/etc/x``, ``~/x``, ``../x``) must lie under one of
  ``allowed_paths`` (without ``allowed_paths``: refused).
* **required names**: the module must define every name of ``required_names`` at top level
  (an assignment, ``def``, ``class`` or import).

The check is conservative: it refuses some harmless code (a column called ``__id__`` in a
string); the message says what to write instead. It is one layer; the generated code also runs
only inside the sandbox (:mod:`lester_dagster.rewrite.sandbox`).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from lester_dagster.errors import GeneratedCodeError

__all__ = [
    "ALLOWED_MODULES",
    "FORBIDDEN_NAMES",
    "Violation",
    "check_code",
    "validate",
]

ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "__future__", "typing", "collections", "collections.abc", "dataclasses", "functools",
        "math", "re", "string", "datetime", "pathlib", "numpy", "pandas", "scipy.sparse",
        "sklearn.preprocessing", "sklearn.compose", "sklearn.feature_extraction",
        "sklearn.linear_model", "sklearn.naive_bayes", "sklearn.pipeline", "sklearn.impute",
        "vaderSentiment.vaderSentiment", "lester_dagster.frame", "lester_dagster.orchestration",
    }
)  # fmt: skip
"""Modules (with their submodules) generated code may import; see the module docstring."""

_RESTRICTED_NAMES: dict[str, frozenset[str]] = {
    "lester_dagster.orchestration": frozenset({"LesterPipeline", "SourceSpec", "SplitSpec"}),
    "pathlib": frozenset({"Path", "PurePath", "PurePosixPath"}),
}
_NO_SUBMODULES = frozenset({"lester_dagster.frame", "lester_dagster.orchestration", "pathlib"})

FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "__import__", "eval", "exec", "compile", "open", "input", "breakpoint", "globals",
        "locals", "vars", "setattr", "delattr", "exit", "quit", "help",
    }
)  # fmt: skip
"""Built-in names refused wherever they appear."""

_FORBIDDEN_QUALIFIED = (
    "numpy.save", "numpy.load", "numpy.loadtxt", "numpy.savetxt", "numpy.genfromtxt",
    "numpy.fromfile", "numpy.fromregex", "numpy.memmap", "numpy.DataSource", "numpy.lib",
    "numpy.ctypeslib", "numpy.f2py", "numpy.testing", "numpy.distutils", "pandas.read_",
    "pandas.io", "pandas.ExcelWriter", "pandas.ExcelFile", "pandas.HDFStore", "pandas.eval",
    "pandas.util", "pandas.testing", "scipy.sparse.save_npz", "scipy.sparse.load_npz",
)  # fmt: skip
_FILE_METHODS = frozenset(
    {
        "to_csv", "to_parquet", "to_pickle", "to_json", "to_excel", "to_hdf", "to_sql",
        "to_feather", "to_stata", "to_html", "to_latex", "to_markdown", "to_xml",
        "to_clipboard", "to_orc", "tofile", "dump", "save", "savez", "save_npz", "load_npz",
        "read_text", "write_text", "read_bytes", "write_bytes", "open", "unlink", "rmdir",
        "mkdir", "touch", "symlink_to", "hardlink_to", "chmod", "iterdir", "glob", "rglob",
        "expanduser", "home", "cwd", "eval", "query",
    }
)  # fmt: skip
_FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "os", "sys", "subprocess", "shutil", "socket", "builtins", "importlib", "ctypes",
        "pickle", "marshal", "io", "posix", "nt", "signal", "threading", "multiprocessing",
    }
)  # fmt: skip
_ALLOWED_DUNDER_ATTRIBUTES = frozenset({"__init__", "__name__", "__doc__"})
_ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__all__", "__doc__", "__file__"})
_DUNDER_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])__[a-z][a-z0-9_]*__(?![A-Za-z0-9])")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Violation:
    """One refused construct: where (``line``, ``col``; 0 for the whole module), which
    ``rule``, a ``message`` that says what to do instead, and the offending ``source`` line."""

    line: int
    col: int
    rule: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "module"
        code = f"\n    {self.source}" if self.source else ""
        return f"{where}: [{self.rule}] {self.message}{code}"


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _module_allowed(module: str) -> bool:
    for allowed in ALLOWED_MODULES:
        if module == allowed:
            return True
        if module.startswith(allowed + ".") and allowed not in _NO_SUBMODULES:
            return True
    return False


def _forbidden_qualified(dotted: str) -> str | None:
    for prefix in _FORBIDDEN_QUALIFIED:
        if dotted == prefix or dotted.startswith(prefix if prefix.endswith("_") else prefix + "."):
            return prefix
    return None


def _is_absolute_or_escaping(text: str) -> bool:
    if not text or any(c.isspace() for c in text) or len(text) > 4096:
        return False
    if text.startswith(("/", "~", "\\")) and len(text) > 1:
        return True
    return text == ".." or text.startswith("../") or "/../" in text or text.endswith("/..")


def _under(text: str, roots: Sequence[str]) -> bool:
    path = PurePosixPath(os.path.normpath(os.path.expanduser(text)))
    for root in roots:
        base = PurePosixPath(os.path.normpath(os.path.expanduser(root)))
        if path == base or base in path.parents:
            return True
    return False


def _dotted(node: ast.expr) -> tuple[str, list[str]] | None:
    """``a.b.c`` -> ("a", ["b", "c"]); None if the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return node.id, parts[::-1]
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, lines: Sequence[str], allowed_paths: Sequence[str] | None) -> None:
        self.lines = lines
        self.allowed_paths = allowed_paths
        self.aliases: dict[str, str] = {}  # local name -> module or module.attribute
        self.violations: list[Violation] = []
        self.docstrings: set[int] = set()
        self.refused: dict[str, str] = {}  # local name of a refused import -> its module

    def note_docstrings(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                first = node.body[0] if node.body else None
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    self.docstrings.add(id(first.value))

    def add(self, node: ast.AST, rule: str, message: str) -> None:
        line = getattr(node, "lineno", 0)
        source = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.violations.append(
            Violation(line, getattr(node, "col_offset", 0), rule, message, source)
        )

    # imports ----------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            module = alias.name
            if module in _RESTRICTED_NAMES and module not in ("pathlib",):
                self.add(
                    node,
                    "import",
                    f"'import {module}' is not allowed; import only "
                    f"{sorted(_RESTRICTED_NAMES[module])} with 'from {module} import ...'",
                )
                continue
            if not self._check_module(node, module):
                self.refused[alias.asname or module.split(".")[0]] = module
                continue
            if alias.asname:
                self.aliases[alias.asname] = module
            else:
                root = module.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(
                node,
                "import",
                "relative imports are not allowed; import from the "
                "allowed modules by their full name",
            )
            for alias in node.names:
                self.refused[alias.asname or alias.name] = "a relative import"
            return
        module = node.module or ""
        for alias in node.names:
            if alias.name == "*":
                self.add(
                    node,
                    "import",
                    f"'from {module} import *' is not allowed; import the names you use explicitly",
                )
                continue
            target = f"{module}.{alias.name}"
            restricted = _RESTRICTED_NAMES.get(module)
            if restricted is not None and alias.name not in restricted:
                self.add(
                    node,
                    "import",
                    f"{alias.name!r} from {module} is not allowed; only "
                    f"{sorted(restricted)} may be imported from it",
                )
                self.refused[alias.asname or alias.name] = target
                continue
            if module.startswith("lester_dagster") and alias.name.startswith("_"):
                self.add(node, "private", f"{target} is private; use the public API of {module}")
                self.refused[alias.asname or alias.name] = target
                continue
            if not (_module_allowed(module) or _module_allowed(target)):
                self.add(node, "import", self._refusal(module))
                self.refused[alias.asname or alias.name] = target
                continue
            forbidden = _forbidden_qualified(target)
            if forbidden:
                self.add(
                    node,
                    "file-io",
                    f"{target} ({forbidden}) reads/writes files or "
                    "reaches outside the pipeline; declare the files as SourceSpec "
                    "sources instead",
                )
                self.refused[alias.asname or alias.name] = target
                continue
            self.aliases[alias.asname or alias.name] = target

    def _check_module(self, node: ast.AST, module: str) -> bool:
        if not _module_allowed(module):
            self.add(node, "import", self._refusal(module))
            return False
        forbidden = _forbidden_qualified(module)
        if forbidden:
            self.add(node, "file-io", f"{module} is not allowed (file IO or internals)")
            return False
        return True

    @staticmethod
    def _refusal(module: str) -> str:
        return (
            f"import of {module!r} is not allowed: generated pipeline code may import only "
            f"{', '.join(sorted(ALLOWED_MODULES))}; no file, network or process access "
            "(the pipeline reads its declared sources itself)"
        )

    # names and attributes ---------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.refused and isinstance(node.ctx, ast.Load):
            self.add(
                node,
                "import",
                f"{node.id!r} comes from a refused import ({self.refused[node.id]}); "
                "it cannot be used",
            )
        elif node.id == "getattr":
            self.visit_Name_getattr(node)
        elif node.id in FORBIDDEN_NAMES:
            self.add(
                node,
                "builtin",
                f"{node.id!r} is not allowed in generated code (dynamic "
                "code, file or interpreter access); write the computation directly",
            )
        elif _is_dunder(node.id) and node.id not in _ALLOWED_DUNDER_NAMES:
            self.add(node, "dunder", f"the name {node.id!r} is not allowed (interpreter internals)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_dunder(node.attr) and node.attr not in _ALLOWED_DUNDER_ATTRIBUTES:
            self.add(
                node,
                "dunder",
                f"access to the dunder attribute {node.attr!r} is not "
                "allowed (interpreter internals)",
            )
        elif node.attr in _FORBIDDEN_ATTRIBUTES:
            self.add(
                node,
                "import",
                f".{node.attr} is not allowed: it names a module that gives file, process or "
                "interpreter access (rename the variable or column if it is one)",
            )
        elif node.attr in _FILE_METHODS:
            self.add(
                node,
                "file-io",
                f".{node.attr} is not allowed: no file access, no "
                "writes, no expression evaluation in generated code; sources are declared "
                "with SourceSpec and artifacts are stored by the pipeline",
            )
        else:
            self._check_chain(node)
        self.generic_visit(node)

    def _check_chain(self, node: ast.Attribute) -> None:
        chain = _dotted(node)
        if chain is None or chain[0] not in self.aliases:
            return
        dotted = ".".join([self.aliases[chain[0]], *chain[1]])
        forbidden = _forbidden_qualified(dotted)
        if forbidden:
            self.add(
                node,
                "file-io",
                f"{dotted} is not allowed (file IO or library internals, "
                f"{forbidden}); declare the files as SourceSpec sources instead",
            )
            return
        parts = dotted.split(".")
        for module, names in _RESTRICTED_NAMES.items():
            if (
                dotted.startswith(module + ".")
                and dotted[len(module) + 1 :].split(".")[0] not in names
            ):
                self.add(
                    node, "import", f"{dotted} is not allowed; only {sorted(names)} of {module}"
                )
                return
        if any(part.startswith("_") for part in chain[1]):
            self.add(
                node,
                "private",
                f"{dotted} is private (a name starting with '_'); use the public API",
            )
            return
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if not any(_module_allowed(prefix) for prefix in prefixes):
            self.add(
                node, "import", f"{dotted} is outside the allowed modules; {self._refusal(dotted)}"
            )

    def visit_Call(self, node: ast.Call) -> None:
        if not (isinstance(node.func, ast.Name) and node.func.id == "getattr"):
            self.generic_visit(node)
            return
        name = node.args[1] if len(node.args) >= 2 else None
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            self.add(
                node,
                "getattr",
                "getattr with a computed attribute name is not allowed; use the attribute directly",
            )
        elif (
            _is_dunder(name.value)
            or name.value in _FILE_METHODS
            or name.value in _FORBIDDEN_ATTRIBUTES
            or name.value.startswith("_")
        ):
            self.add(
                node,
                "getattr",
                f"getattr(..., {name.value!r}) is not allowed (a dunder, "
                "private, module or file-access attribute)",
            )
        for child in [*node.args, *node.keywords]:
            self.visit(child)

    def visit_Name_getattr(self, node: ast.Name) -> None:
        self.add(
            node, "getattr", "getattr may only be called directly, with a literal attribute name"
        )

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str) or id(node) in self.docstrings:
            return
        text = node.value
        if _DUNDER_IN_TEXT.search(text):
            self.add(
                node,
                "dunder",
                "a dunder name inside a string is not allowed (format "
                "strings can reach interpreter internals); rename it",
            )
        elif _URL.match(text):
            self.add(
                node,
                "network",
                f"the URL {text[:60]!r} is not allowed: no network "
                "access; sources are local files declared with SourceSpec",
            )
        elif _is_absolute_or_escaping(text):
            if not self.allowed_paths:
                self.add(
                    node,
                    "path",
                    f"the path {text[:80]!r} is absolute or leaves the data "
                    "directory; build source paths from the data directory the pipeline "
                    "is given (relative names such as 'customers.csv')",
                )
            elif not _under(text, self.allowed_paths):
                self.add(
                    node,
                    "path",
                    f"the path {text[:80]!r} is outside the declared data "
                    f"locations {list(self.allowed_paths)}",
                )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            for alias in statement.names:
                names.add(alias.asname or alias.name.split(".")[0])
    return names


def check_code(
    code: str,
    *,
    allowed_paths: Iterable[str | os.PathLike[str]] | None = None,
    required_names: Sequence[str] = (),
) -> list[Violation]:
    """Every violation of the policy (module docstring) in ``code``, in source order; an
    empty list means the code may run (in the sandbox).

    ``allowed_paths``: directories or files that absolute path literals may name (the sample
    data directory, say); ``required_names``: top-level names the module must define.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str of Python source, got {type(code).__name__}")
    lines = code.splitlines()
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        line = error.lineno or 0
        source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return [
            Violation(line, (error.offset or 1) - 1, "syntax", f"syntax error: {error.msg}", source)
        ]
    roots = None if allowed_paths is None else [os.fspath(p) for p in allowed_paths]
    checker = _Checker(lines, roots)
    checker.note_docstrings(tree)
    checker.visit(tree)
    seen: set[tuple[int, int, str]] = set()
    violations = []
    for violation in sorted(checker.violations, key=lambda v: (v.line, v.col)):
        if (violation.line, violation.col, violation.rule) not in seen:  # a chain's inner nodes
            seen.add((violation.line, violation.col, violation.rule))
            violations.append(violation)
    defined = _top_level_names(tree)
    for name in required_names:
        if name not in defined:
            violations.append(
                Violation(
                    0,
                    0,
                    "contract",
                    f"the module must define {name!r} at top level "
                    f"(it defines: {', '.join(sorted(defined)) or 'nothing'})",
                )
            )
    return violations


def validate(
    code: str,
    *,
    allowed_paths: Iterable[str | os.PathLike[str]] | None = None,
    required_names: Sequence[str] = (),
) -> None:
    """Raise :class:`GeneratedCodeError` listing every violation of :func:`check_code`."""
    violations = check_code(code, allowed_paths=allowed_paths, required_names=required_names)
    if violations:
        listing = "\n".join(str(v) for v in violations)
        raise GeneratedCodeError(
            f"the generated code was refused before running ({len(violations)} "
            f"violation{'s' if len(violations) != 1 else ''} of the allow-list policy of "
            f"lester_dagster.rewrite.validate):\n{listing}"
        )
