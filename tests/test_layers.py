"""The direction of imports: the contracts in pyproject.toml ([tool.importlinter]) hold for the whole package.

import-linter reads the real import graph (grimp), including imports inside functions. The second test shows the
check can fail: the same graph against a contract turned upside down is reported broken.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept():
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_an_upward_import_breaks_the_layers_contract(tmp_path, monkeypatch):
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = config["contracts"][0]
    assert layers["type"] == "layers" and layers["layers"][-1] == "faceauth.config"
    # Every Face API package imports the settings: with them on top, the contract must break.
    upside_down = [layers["layers"][-1], *layers["layers"][:-1]]
    reversed_config = tmp_path / "pyproject.toml"
    reversed_config.write_text(
        f"[tool.importlinter]\nroot_package = {json.dumps(config['root_package'])}\n\n"
        f'[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\n'
        f"layers = {json.dumps(upside_down)}\n"
    )
    monkeypatch.chdir(ROOT)  # the package is found from here
    assert lint_imports(config_filename=str(reversed_config), no_cache=True, no_logo=True) == 1
