"""A maintainer adds a package under approvals/ or gateway_plugin/ and the wheel ships it.

pyproject.toml lists its packages rather than finding them (migrations/ ships as
approvals.migrations), so a new package left off the list installs nowhere: the
wheel would import-fail on `signoff serve` while every test in the tree passed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_in_the_tree_is_listed_for_the_wheel() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("approvals", "gateway_plugin")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert in_tree - listed == set(), "add these to [tool.setuptools] packages"
