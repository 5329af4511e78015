"""End to end in a real browser: JupyterLab, headless Chromium, the panel and the extension.

Starts JupyterLab on 127.0.0.1 with a temporary root, opens a notebook in Debian's
Chromium through Playwright, runs a %%autoresearch cell against the local
OpenAI-compatible test server, and checks what a person sees. Screenshots go to
tests/artifacts/ (not committed).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import LLMServer, Reply, answer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
NB = "window.jupyterapp.shell.currentWidget"
CELLS = f"""() => {NB}.model.sharedModel.cells.map(c => ({{
  id: c.id, source: c.getSource(), meta: c.getMetadata('autoresearch') ?? null }}))"""

if not Path(CHROMIUM).exists() and not os.environ.get("AUTORESEARCH_REQUIRE_BROWSER"):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], Any], timeout: float, what: str, page: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    if page is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "timeout.png"))  # what the user would have seen
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("lab")
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    # Widget state saved in the notebook, as many users set it: a reopened panel must still work.
    widgets = root / "settings" / "@jupyter-widgets" / "jupyterlab-manager"
    widgets.mkdir(parents=True)
    (widgets / "plugin.jupyterlab-settings").write_text('{"saveState": true}')
    port, token = _free_port(), secrets.token_hex(16)
    log = open(root / "lab.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={root / 'settings'}",
            f"--LabApp.workspaces_dir={root / 'workspaces'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return True
        except OSError:
            return False

    try:
        _wait(up, 90, "JupyterLab to start")
        yield f"{base}/lab/tree/{{}}?token={token}", root
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _notebook(path: Path, cells: list[str]) -> None:
    path.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {
                    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                    "language_info": {"name": "python"},
                },
                "cells": [
                    {
                        "cell_type": "code",
                        "id": f"cell-{i}",
                        "metadata": {},
                        "source": source,
                        "outputs": [],
                        "execution_count": None,
                    }
                    for i, source in enumerate(cells)
                ],
            }
        )
    )


def _candidate(k: int) -> str:
    cost = 2 if k % 2 else 0.5
    return f"import time\ntime.sleep(0.2)\nprint('METRIC x={k + 1}')\nprint('METRIC cost={cost}')"


@pytest.mark.timeout(420)
def test_panel_cells_constraints_stop_and_replace_in_jupyterlab(lab: tuple[str, Path], llm: LLMServer) -> None:
    url, root = lab
    ARTIFACTS.mkdir(exist_ok=True)
    counter = iter(range(1, 1000))

    def reply(request: dict[str, Any]) -> Reply:
        k = next(counter)
        return Reply(answer(f"step {k}: <b>bold</b> claim", _candidate(k)), chunk=8, delay=0.04)

    llm.default = reply
    baseline = "print('METRIC x=1')\nprint('METRIC cost=0.5')"
    _notebook(
        root / "e2e.ipynb",
        [
            "%load_ext jupyter_autoresearch",
            f"%%autoresearch --maximize x --model openai/test --api-base {llm.url} --session e2e --max-iterations 60\n"
            + baseline,
            "print('a cell of the user')",
        ],
    )
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url.format("e2e.ipynb"))
        _wait(
            lambda: page.evaluate(
                f"!!(window.jupyterapp && {NB} && {NB}.sessionContext.session?.kernel?.status === 'idle')"
            ),
            120,
            "the kernel",
        )

        def run(index: int) -> None:
            page.evaluate(
                f"async () => {{ {NB}.content.activeCellIndex = {index};"
                "await window.jupyterapp.commands.execute('notebook:run-cell'); }"
            )

        def cells() -> list[dict[str, Any]]:
            return page.evaluate(CELLS)

        def inserted() -> list[dict[str, Any]]:
            return [c for c in cells() if c["meta"]]

        panel = page.locator(".jupyter-autoresearch-panel")
        run(0)
        _wait(lambda: page.evaluate(f"{NB}.sessionContext.session.kernel.status === 'idle'"), 60, "load_ext", page)
        run(1)
        panel.wait_for(timeout=60_000)
        _wait(lambda: len(inserted()) >= 3, 120, "three accepted variants as cells", page)
        assert "running" in panel.inner_text()
        # The progress bar: runs of --max-iterations, elapsed time, ETA and rate, and what the loop does.
        bar = panel.locator(".jupyter-autoresearch-progress")
        assert bar.is_visible()
        _wait(lambda: "/60 runs [" in panel.inner_text(), 30, "the progress meter", page)
        _wait(lambda: "waiting for the model (" in panel.inner_text(), 30, "the wait for the model", page)
        page.screenshot(path=str(ARTIFACTS / "panel-mid-run.png"))

        # The panel renders and updates: iterations advance, model text is shown escaped.
        first = panel.inner_text()
        _wait(lambda: panel.inner_text() != first, 30, "the panel to update", page)
        assert "<b>bold</b> claim" in panel.inner_text()  # shown as text, not as markup
        ids = [c["id"] for c in cells()]
        benchmark = ids[1]
        rows = inserted()
        assert rows[0]["meta"]["session"] == "e2e" and rows[0]["meta"]["run"] == 2
        assert rows[0]["source"].startswith("# autoresearch e2e run 2: x=2 (kept)")
        assert set(rows[0]["meta"]) >= {"session", "run", "metric", "metrics", "hypothesis"}
        order = [c["meta"]["run"] if c["meta"] else None for c in cells()]
        assert order[:2] == [None, None] and order[-1] is None  # variants sit below the benchmark, in run order
        runs = [r for r in order if r is not None]
        assert runs == sorted(runs)

        # A constraint edited in the panel changes the next decisions.
        panel.locator(".lm-TabBar-tab", has_text="Constraints").click()
        panel.locator("button", has_text="Add constraint").click()
        row = panel.locator(".widget-hbox").filter(has=page.locator("input[placeholder^='metric expression']")).last
        row.locator("input[placeholder^='metric expression']").fill("cost")
        row.locator("input[placeholder='bound']").fill("1")
        panel.locator("button", has_text="Apply constraints").click()
        _wait(lambda: "Segment 1: constraints now cost <= 1" in panel.inner_text(), 60, "the new segment", page)
        panel.locator(".lm-TabBar-tab", has_text="History").click()
        _wait(
            lambda: panel.locator(".widget-html", has_text="infeasible").count() > 0,
            60,
            "a run refused by the new constraint",
        )

        def settled() -> list[dict[str, Any]]:
            # Cells arrive and are marked one message each, so wait for the end state: every
            # inserted cell the new rule refuses (cost > 1) is marked, and a variant kept after
            # all of them (under the new rule) has arrived. A cell with cost > 1 kept under the
            # new rule would never be marked, and this wait would fail.
            cells = inserted()
            refused = [c for c in cells if c["meta"]["metrics"]["cost"] > 1]
            marked = [c for c in cells if c["meta"].get("infeasible")]
            if not refused or [c["meta"]["run"] for c in marked] != [c["meta"]["run"] for c in refused]:
                return []
            last_refused = max(c["meta"]["run"] for c in refused)
            return marked if any(c["meta"]["run"] > last_refused for c in cells) else []

        marked = _wait(settled, 90, "refused cells marked and a variant kept under the new constraint", page)
        assert all(c["source"].startswith("# autoresearch: INFEASIBLE:") for c in marked)

        # Stop stops the loop.
        panel.locator("button", has_text="Stop").click()
        _wait(lambda: "stopped (user" in panel.inner_text(), 60, "the loop to stop", page)
        count = len(inserted())
        time.sleep(2)
        assert len(inserted()) == count  # nothing arrives after the stop

        # "Replace" export puts the winner into the original benchmark cell.
        panel.locator(".lm-TabBar-tab", has_text="Export").click()
        panel.locator("select").last.select_option(label="Replace benchmark cell")
        panel.locator("button", has_text="Export").click()
        _wait(lambda: "replaced the benchmark cell" in panel.inner_text(), 30, "the export message", page)
        source = next(c["source"] for c in cells() if c["id"] == benchmark)
        best = [c for c in inserted() if not c["meta"].get("infeasible")][-1]
        assert source == best["source"].split("\n", 1)[1].rstrip("\n")
        page.keyboard.press("Escape")

        # "New notebook" export writes the winner with its setup and opens it in a new tab.
        panel.locator("select").last.select_option(label="New notebook")
        panel.locator("input[placeholder='path or branch name']").fill("winner.ipynb")
        panel.locator("button", has_text="Export").click()
        _wait(
            lambda: page.evaluate("window.jupyterapp?.shell?.currentWidget?.context?.path") == "winner.ipynb",
            30,
            "the exported notebook to open",
            page,
        )
        assert (root / "winner.ipynb").exists()
        page.screenshot(path=str(ARTIFACTS / "exported-notebook.png"))
        page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:open', {path: 'e2e.ipynb'}); }")
        _wait(lambda: page.evaluate(f"{NB}?.context?.path") == "e2e.ipynb", 30, "the e2e notebook tab", page)

        # The command palette reaches the same exports through the kernel.
        command = "jupyter-autoresearch:export-file"
        assert page.evaluate(f"window.jupyterapp.commands.isEnabled('{command}')")
        page.evaluate(f"() => {{ window.jupyterapp.commands.execute('{command}'); }}")
        dialog = page.locator(".jp-Dialog input")
        dialog.wait_for(timeout=10_000)
        dialog.fill("from_palette.py")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        _wait(lambda: (root / "from_palette.py").exists(), 30, "the palette export", page)
        assert "# autoresearch e2e run" in (root / "from_palette.py").read_text()
        page.screenshot(path=str(ARTIFACTS / "panel-end.png"), full_page=True)
        _each_tab_in_both_themes(page, panel)
        browser.close()


def _theme(page: Any, name: str) -> None:
    page.evaluate(
        f"async () => {{ await window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{name}'}}); }}"
    )
    _wait(lambda: page.evaluate("document.body.dataset.jpThemeName") == name, 30, f"the {name} theme", page)
    page.wait_for_timeout(500)  # the theme's stylesheet applies


def _luminance(page: Any, selector: str, prop: str) -> float:
    """0 (black) to 1 (white): the computed colour of ``prop`` of the first match."""
    rgb = page.evaluate(
        f"() => getComputedStyle(document.querySelector({json.dumps(selector)})).{prop}"
    )  # "rgb(r, g, b)" or "rgba(...)"
    r, g, b = (float(v) for v in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _each_tab_in_both_themes(page: Any, panel: Any) -> None:
    """A screenshot of each tab in the light and the dark theme; text follows the theme."""
    chart_text = ".jupyter-autoresearch-panel svg text"
    for theme, tag in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        _theme(page, theme)
        for tab in ("History", "Run detail", "Chart", "Constraints", "Export"):
            panel.locator(".lm-TabBar-tab", has_text=tab).click()
            page.wait_for_timeout(300)
            if tab == "Chart":
                fill = _luminance(page, chart_text, "fill")
                assert (fill > 0.5) if tag == "dark" else (fill < 0.5), (theme, fill)  # readable on its background
            panel.screenshot(path=str(ARTIFACTS / f"panel-{tag}-{tab.lower().replace(' ', '-')}.png"))
        header = _luminance(page, ".jupyter-autoresearch-panel .widget-html-content", "color")
        assert (header > 0.5) if tag == "dark" else (header < 0.5), (theme, header)
    _theme(page, "JupyterLab Light")


def _logged_runs(log: Path) -> list[dict[str, Any]]:
    """The run lines of a session log."""
    if not log.exists():
        return []
    return [r for line in log.read_text().splitlines() if line.strip() and "run" in (r := json.loads(line))]


@pytest.mark.timeout(420)
def test_reload_and_reopen_lose_no_accepted_cell(lab: tuple[str, Path], llm: LLMServer) -> None:
    url, root = lab
    ARTIFACTS.mkdir(exist_ok=True)
    counter = iter(range(1, 1000))

    def reply(request: dict[str, Any]) -> Reply:
        k = next(counter)
        return Reply(answer(f"step {k}", _candidate(k).replace("0.2", "0.4")), chunk=16, delay=0.02)

    llm.default = reply
    _notebook(
        root / "reload.ipynb",
        [
            "%load_ext jupyter_autoresearch",
            f"%%autoresearch --maximize x --model openai/test --api-base {llm.url} --session rl --max-iterations 14\n"
            "print('METRIC x=1')\nprint('METRIC cost=0.5')",
            "print('a cell of the user')",
        ],
    )
    log = root / ".autoresearch" / "rl" / "log.jsonl"
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" on reload

        def ready(path: str) -> None:
            _wait(
                lambda: page.evaluate(
                    f"!!(window.jupyterapp && {NB}?.context?.path === '{path}'"
                    f" && {NB}.sessionContext?.session?.kernel?.status === 'idle')"
                ),
                120,
                f"{path} and its kernel",
                page,
            )

        def run(index: int) -> None:
            page.evaluate(
                f"async () => {{ {NB}.content.activeCellIndex = {index};"
                "await window.jupyterapp.commands.execute('notebook:run-cell'); }"
            )

        def inserted() -> list[int]:
            return [c["meta"]["run"] for c in page.evaluate(CELLS) if c["meta"]]

        page.goto(url.format("reload.ipynb") + "&reset")  # not the tabs an earlier test left open
        ready("reload.ipynb")
        run(0)
        ready("reload.ipynb")
        run(1)
        _wait(lambda: len(inserted()) >= 2, 120, "two accepted variants as cells", page)

        # Reload mid-session: the new page finds the comm again and gets what the old one missed.
        page.reload()
        ready("reload.ipynb")
        _wait(lambda: len(_logged_runs(log)) == 15, 180, "the loop to end", page)
        kept = [r["run"] for r in _logged_runs(log) if r["status"] == "keep" and r["run"] > 1]
        assert len(kept) >= 4, kept
        _wait(lambda: inserted() == kept, 60, "every accepted run as a cell, once, in run order", page)
        live = page.locator(f"#{page.evaluate(f'{NB}.id')} .jupyter-autoresearch-panel")
        _wait(lambda: "stopped" in live.inner_text(), 120, "the reloaded panel to follow the session", page)
        _wait(lambda: "Not in the notebook yet" not in live.inner_text(), 120, "the panel to see every ack", page)
        page.screenshot(path=str(ARTIFACTS / "after-reload.png"))

        # Reopen the notebook (saved, closed, opened again); never clicked a tab before.
        page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
        saved = json.loads((root / "reload.ipynb").read_text())["metadata"]["widgets"]
        tabs = [
            m
            for m in saved["application/vnd.jupyter.widget-state+json"]["state"].values()
            if m["model_name"] == "TabModel"
        ]
        assert tabs and tabs[0]["state"]["selected_index"] == 0  # saved with the widget state, never clicked
        page.evaluate(f"async () => {{ await {NB}.close(); }}")
        _wait(lambda: page.evaluate(f"!{NB} || {NB}.context?.path !== 'reload.ipynb'"), 30, "the notebook to close")
        page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:open', {path: 'reload.ipynb'}); }")
        ready("reload.ipynb")
        panel = page.locator(f"#{page.evaluate(f'{NB}.id')} .jupyter-autoresearch-panel")
        panel.wait_for(timeout=60_000)
        assert inserted() == kept  # nothing inserted twice by the reopened page

        # The tabs answer clicks.
        panel.locator(".lm-TabBar-tab", has_text="Export").click()
        export_button = panel.locator("button", has_text="Export")
        export_button.wait_for(state="visible", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "reopened-export-tab.png"))

        # Insert best below: the best's cell was deleted; it comes back, and the panel says so after the ack.
        best = kept[-1]
        page.evaluate(
            f"""() => {{ const nb = {NB}.model.sharedModel;
            const i = nb.cells.findIndex(c => c.getMetadata('autoresearch')?.run === {best});
            nb.deleteCell(i); }}"""
        )
        assert best not in inserted()
        panel.locator("select").last.select_option(label="Insert best below")
        export_button.click()
        _wait(lambda: f"inserted run {best} below the benchmark cell" in panel.inner_text(), 30, "the insert", page)
        assert inserted() == kept

        # Replace benchmark cell.
        panel.locator("select").last.select_option(label="Replace benchmark cell")
        export_button.click()
        _wait(lambda: "replaced the benchmark cell" in panel.inner_text(), 30, "the replace", page)
        source = page.evaluate(CELLS)[1]["source"]
        assert source.startswith("import time") and f"METRIC x={best}" in source

        # %autoresearch export --to cell reports only once the page confirmed.
        page.evaluate(
            f"""() => {{ const nb = {NB}.model.sharedModel;
            const i = nb.cells.findIndex(c => c.getMetadata('autoresearch')?.run === {best});
            nb.deleteCell(i);
            nb.insertCell(nb.cells.length, {{cell_type: 'code', source: '%autoresearch export --to cell'}}); }}"""
        )
        run(len(page.evaluate(CELLS)) - 1)
        last = page.locator(".jp-Cell").last
        _wait(lambda: f"inserted run {best} below the benchmark cell" in last.inner_text(), 30, "the line magic", page)
        assert inserted() == kept
        page.screenshot(path=str(ARTIFACTS / "reopened-end.png"), full_page=True)
        browser.close()
