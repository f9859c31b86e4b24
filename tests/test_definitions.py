"""The Dagster code location that workspace.yaml points at loads."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml


def test_workspace_points_at_a_loadable_code_location() -> None:
    root = Path(__file__).resolve().parents[1]
    workspace = yaml.safe_load((root / "workspace.yaml").read_text())
    module_name = workspace["load_from"][0]["python_module"]["module_name"]
    module = __import__(module_name)
    assert isinstance(module.defs, dg.Definitions)
