"""What `pip install .` ships: every file the package reads at run time besides its modules
(the OpenAPI documents, the dashboard, the demo site) is named in pyproject's package-data, so
a non-editable install serves the same API as a checkout."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_of_the_package_is_shipped():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["smartcharge"]
    package = ROOT / "smartcharge"
    # setuptools globs each pattern relative to the package directory, as Path.glob does
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    data = {path for path in package.rglob("*") if path.is_file()
            and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts}
    assert data, "the package has no data files: the test looks in the wrong place"
    missing = sorted(str(path.relative_to(package)) for path in data - shipped)
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
