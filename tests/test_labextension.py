"""The TypeScript side: jest tests and the packaging of the prebuilt extension."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABEXTENSION = ROOT / "labextension"


@pytest.mark.timeout(600)
def test_jest_suite() -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed to test the JupyterLab extension"
    if not (LABEXTENSION / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=LABEXTENSION, check=True, capture_output=True)
    done = subprocess.run([npm, "test", "--", "--ci"], cwd=LABEXTENSION, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " failed" not in done.stderr and "passed" in done.stderr


def test_the_installed_extension_is_enabled() -> None:
    done = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True)
    listing = done.stdout + done.stderr
    line = next((line for line in listing.splitlines() if "jupyter-autoresearch" in line), "")
    assert "enabled" in line and "OK" in line, listing
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert package["jupyterlab"]["outputDir"] == "../jupyter_autoresearch/labextension"
