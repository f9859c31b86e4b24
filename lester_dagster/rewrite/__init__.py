"""LLM rewrite: an imperative data-science script becomes a checked, declarative pipeline
module (``definitions/<name>.py``).

The rewrite talks to any OpenAI-compatible server, refuses generated code that fails a static
allow-list check, runs it in a time- and memory-limited subprocess on sample data, and compares
its artifacts with the original script's (the differential check) before anything is written.
It depends only on the frame's public API (import-linter contract).
"""

from __future__ import annotations

__all__: list[str] = []
