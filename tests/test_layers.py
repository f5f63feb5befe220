"""The direction of imports: the contracts in pyproject.toml ([tool.importlinter]) hold for the whole package.

import-linter reads the real import graph (grimp), including imports inside functions. The second test shows the
check can fail: the same graph against a contract turned upside down is reported broken. It runs as a process of
its own: in this one it would reconfigure logging (and silence the loggers other tests listen to).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(command), "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_every_import_contract_is_kept():
    result = lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
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
    result = lint_imports(reversed_config)
    assert result.returncode == 1 and "upside down BROKEN" in result.stdout, result.stdout + result.stderr
