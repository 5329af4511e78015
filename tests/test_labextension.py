"""The TypeScript side: jest tests and the packaging of the prebuilt extension."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABEXTENSION = ROOT / "labextension"
BUILT = ROOT / "jupyter_autoresearch" / "labextension"


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


def test_the_committed_build_is_made_from_the_current_sources() -> None:
    """The prebuilt extension ships in the repository (so an install needs no Node);
    ``labextension/scripts/after-build.js`` records the sources each build was made from."""
    recorded = dict(
        reversed(line.split("  ", 1)) for line in (BUILT / "sources.sha256").read_text().splitlines() if line
    )
    sources = {p.relative_to(ROOT).as_posix() for p in (LABEXTENSION / "src").rglob("*") if p.is_file()}
    sources = {p for p in sources if "/__tests__/" not in p}
    sources |= {p.relative_to(ROOT).as_posix() for p in (LABEXTENSION / "style").rglob("*") if p.is_file()}
    sources |= {"labextension/package.json", "labextension/package-lock.json", "labextension/tsconfig.json"}
    sources |= {"install.json"}
    assert set(recorded) == sources, "sources were added or removed since the build"
    stale = [f for f, digest in recorded.items() if hashlib.sha256((ROOT / f).read_bytes()).hexdigest() != digest]
    assert not stale, (
        f"the committed extension is stale ({', '.join(stale)} changed): run "
        "`cd labextension && npm run build:prod` and commit jupyter_autoresearch/labextension"
    )
    built = json.loads((BUILT / "package.json").read_text())
    remote = built["jupyterlab"]["_build"]["load"]
    assert (BUILT / remote).is_file() and (BUILT / "install.json").is_file()
    assert not list((BUILT / "static").glob("*.map")), "a development build: commit the npm run build:prod output"
