"""A real browser runs the workbook: headless Chromium (Debian's `chromium`, driven by
`playwright`) opens JupyterLab, runs lesson 00, then runs lesson 04 and uses its
playground as a learner would: moves the knob, presses Run, sees a new plot. No cell
may end in an error, and no widget may show "Error displaying widget".

JupyterLab serves a copy of the notebooks in a temporary folder (running them in the
browser saves them), with its own runtime, config, data, settings and workspace
folders, so nothing of the machine's Jupyter set-up changes what the browser sees and
nothing is left behind: the server, its kernels and the browser are stopped at the end,
test failed or not. Screenshots go to build/screenshots/ (lesson00.png, playground04.png).

Needs Debian's chromium (`apt-get install chromium`; `.ci/run` installs it) and the
Python package playwright (in the `dev` extra); it skips, saying so, without them.
Playwright's own browsers are never downloaded (no `playwright install`).
WSLAB_CHROMIUM=/path/to/chromium chooses another Chromium; WSLAB_CHROMIUM=/nonexistent
shows the skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
URL = re.compile(r"(http://127\.0\.0\.1:\d+)/\S*\?token=(\w+)")
MISSING = ("needs Debian's chromium (apt-get install chromium) and the Python package "
           "playwright (pip install -e '.[dev]'; no `playwright install`)")
SERVER_START_S = 90
NOTEBOOK_RUN_MS = 150_000  # Run All Cells (lessons 00 and 04: about 10 s each, alone)
STEP_MS = 60_000  # anything else the page waits for

# JupyterLab's news toast would cover part of the screenshots.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}

# JupyterLab runs with `--LabApp.expose_app_in_browser` (window.jupyterapp), so that the
# test reads the notebook's model: a cell whose input or output is collapsed, or which
# is not rendered yet, still has its execution count and outputs there.
NOTEBOOK = """name => [...window.jupyterapp.shell.widgets('main')]
    .find(w => w.context && w.context.path === name && w.content && w.content.model)"""

# Every code cell's execution count and outputs, and the kernel's status.
STATE = f"""name => {{
    const panel = ({NOTEBOOK})(name);
    if (!panel) return null;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = [...panel.content.model.cells].filter(c => c.type === 'code').map(c => ({{
        count: c.executionCount, outputs: c.outputs.toJSON(),
        source: c.sharedModel.getSource().slice(0, 300)}}));
    return {{kernel: kernel ? kernel.status : null, cells}};
}}"""

# True once every code cell has run and the kernel is idle, or as soon as a cell ends in
# an error (Run All Cells stops there).
FINISHED = f"""name => {{
    const state = ({STATE})(name);
    if (!state || state.kernel !== 'idle') return false;
    return state.cells.every(c => c.count !== null)
        || state.cells.some(c => c.outputs.some(o => o.output_type === 'error'));
}}"""


try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # the test skips
    PlaywrightTimeoutError = TimeoutError


def chromium_path() -> str | None:
    chosen = os.environ.get("WSLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None


@pytest.fixture
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(f"{MISSING}: no chromium "
                    f"({os.environ.get('WSLAB_CHROMIUM') or 'chromium'} not found)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip(f"{MISSING}: no module named playwright")
    return path


def start_lab(home: Path) -> tuple[subprocess.Popen, Path, str, str]:
    """`jupyter lab` serving `home/notebooks` as `make lab` starts it (127.0.0.1, a free port,
    no browser of its own); returns the process, its log, the base URL and the token."""
    for name in ("runtime", "config/labconfig", "data", "settings", "workspaces"):
        (home / name).mkdir(parents=True, exist_ok=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    env = {**os.environ, "BROWSER": "true", "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data")}
    log = home / "jupyter.log"
    with log.open("w") as out:
        lab = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             "--ServerApp.port=0", f"--ServerApp.root_dir={home / 'notebooks'}",
             f"--LabApp.user_settings_dir={home / 'settings'}",
             f"--LabApp.workspaces_dir={home / 'workspaces'}",
             "--LabApp.expose_app_in_browser=True",
             *(["--allow-root"] if os.getuid() == 0 else [])],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    deadline = time.monotonic() + SERVER_START_S
    while not (found := URL.search(log.read_text())):
        if lab.poll() is not None or time.monotonic() > deadline:
            stop_lab(lab, home)
            raise AssertionError("jupyter lab printed no URL:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    base, token = found.groups()
    # Jupyter prints its URL a moment before it listens when it chose the port itself
    # (tests/test_make_lab.py measured it).
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=30):
                break
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                stop_lab(lab, home)
                raise AssertionError(log.read_text()[-3000:]) from exc
            time.sleep(0.1)
    return lab, log, base, token


def stop_lab(lab: subprocess.Popen, home: Path) -> None:
    """Stop the server and everything it started. Jupyter shuts its kernels down on
    SIGTERM; they run in sessions of their own, so any it left (a server killed, a kernel
    stuck) is found by its connection file, which lives in this test's runtime folder."""
    try:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(lab.pid, signal.SIGKILL)
        lab.wait()
    except ProcessLookupError:
        pass
    runtime = str(home / "runtime")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if runtime in cmdline and "kernel" in cmdline:
            pid = int(proc.name)
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def open_notebook(page, base: str, token: str, name: str) -> None:
    """Open `name` in a workspace of its own (so that it is the only notebook in the page)
    and wait until its kernel is idle."""
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?token={token}")
    page.wait_for_function(
        f"name => {{ const s = ({STATE})(name); return s !== null && s.kernel === 'idle'; }}",
        arg=name, timeout=STEP_MS)


def run_all(page, name: str) -> list[dict]:
    """Edit > Clear Outputs of All Cells, then Run > Run All Cells, as a learner would;
    wait until every code cell has run (or one failed); return the code cells."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(f"name => ({STATE})(name).cells.every(c => c.count === null)",
                           arg=name, timeout=STEP_MS)
    menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_function(FINISHED, arg=name, timeout=NOTEBOOK_RUN_MS, polling=250)
    except PlaywrightTimeoutError:
        state = page.evaluate(STATE, name)
        waiting = [c["source"] for c in state["cells"] if c["count"] is None]
        raise AssertionError(
            f"{name}: Run All Cells did not finish in {NOTEBOOK_RUN_MS / 1000:g} s (kernel "
            f"{state['kernel']}; {len(waiting)} cells not run, the first:\n"
            f"{waiting[0] if waiting else ''})") from None
    return page.evaluate(STATE, name)["cells"]


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel").filter(has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(f"^{re.escape(item)}$")).click()


def assert_no_errors(page, name: str, cells: list[dict], where: str = "") -> None:
    """No cell ended in an error or wrote to stderr (the stored notebooks have no stderr
    either: tests/test_packaging.py), every cell ran, and no widget failed to display."""
    where = f"{name}{where}"
    for cell in cells:
        for output in cell["outputs"]:
            text = "\n".join(output.get("traceback", [])) or "".join(output.get("text", ""))
            assert output["output_type"] != "error" and output.get("name") != "stderr", (
                f"{where}: the cell\n{cell['source']}\nended with\n{text[-3000:]}")
        assert cell["count"] is not None, f"{where}: a cell never ran:\n{cell['source']}"
    body = page.evaluate("() => document.body.textContent")
    assert "Error displaying widget" not in body, f"{where}: a widget failed to display"


def hide_file_browser(page) -> None:
    """Close the left sidebar (the file browser) so that the screenshots show the notebook."""
    current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current.count():
        current.click()


def show(page, element) -> None:
    """Scroll `element` to the top of the notebook, and wait until the page has painted
    it (JupyterLab paints only the cells in view)."""
    element.wait_for(state="visible")
    top = None
    for _ in range(20):  # painting the cells above it moves it: scroll until it stays
        element.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.evaluate("() => new Promise(done => "
                      "requestAnimationFrame(() => requestAnimationFrame(done)))")
        top, before = element.evaluate("e => e.getBoundingClientRect().top"), top
        if top == before:
            break


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=path)
    print(f"screenshot: {path}")
    return path


def playground_reruns(page, name: str) -> str:
    """In `name`, already run: move the playground's knob, press its Run, wait for a new
    plot; returns what the knob went from and to."""
    playground = (page.locator(".jp-NotebookPanel .widget-vbox")
                  .filter(has=page.locator(".widget-slider"))
                  .filter(has=page.get_by_role("button", name="Run")))
    assert playground.count() == 1, f"{name} shows no playground (or more than one)"
    output = playground.locator(".widget-output")
    label = playground.locator(".widget-hprogress .widget-label")
    assert output.locator("img").count() == 1, "the playground shows no plot after Run All"
    before = output.locator("img").get_attribute("src")
    readout = playground.locator(".widget-readout")
    value = readout.text_content().strip()
    handle = playground.locator(".noUi-handle")
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    page.wait_for_function("([readout, value]) => readout.textContent.trim() !== value",
                           arg=[readout.element_handle(), value])
    moved = readout.text_content().strip()
    assert float(moved) > float(value), f"the knob did not move right: {value} -> {moved}"
    playground.get_by_role("button", name="Run").click()
    try:
        page.wait_for_function(
            "([output, src]) => { const images = output.querySelectorAll('img');"
            " return images.length === 1 && images[0].src !== src; }",
            arg=[output.element_handle(), before])
    except PlaywrightTimeoutError:
        shown = output.locator("img").evaluate_all("images => images.map(i => i.src)")
        raise AssertionError(
            f"the playground's Run drew no new plot in {STEP_MS / 1000:g} s (knob {value} -> "
            f"{moved}, progress {label.text_content()!r}, {len(shown)} plot(s) shown, "
            f"the same as before: {shown == [before]})") from None
    assert label.text_content() == "done", label.text_content()
    assert playground.get_by_role("button", name="Run").is_enabled()
    assert_no_errors(page, name, page.evaluate(STATE, name)["cells"], " after the playground's Run")
    show(page, playground)
    return f"{value} -> {moved}"


@pytest.mark.timeout(300)
def test_lesson_00_and_a_playground_run_in_a_real_browser(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    (SCREENSHOTS / "failed.png").unlink(missing_ok=True)  # from an earlier run
    home = tmp_path
    (home / "notebooks").mkdir()
    for source in [*(ROOT / "notebooks").glob("*.ipynb"), ROOT / "notebooks" / "sanitize.cfg"]:
        shutil.copy(source, home / "notebooks")
    lab, log, base, token = start_lab(home)
    page_errors: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(STEP_MS)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            try:
                for lesson in ("00_start_here.ipynb", "04_durability.ipynb"):
                    open_notebook(page, base, token, lesson)
                    hide_file_browser(page)
                    assert_no_errors(page, lesson, run_all(page, lesson))
                    if lesson.startswith("00"):
                        show(page, page.locator(".jp-NotebookPanel .jp-OutputArea-output img")
                             .first)
                        screenshot(page, "lesson00.png")
                    else:
                        knob = playground_reruns(page, lesson)
                        screenshot(page, "playground04.png")
                        print(f"playground: knob {knob}, Run drew a new plot")
            except BaseException:
                with contextlib.suppress(Exception):
                    screenshot(page, "failed.png")
                print("jupyter lab's log, the end:\n" + log.read_text()[-5000:])
                raise
            finally:
                browser.close()
        assert not page_errors, "errors in the page's JavaScript:\n" + "\n".join(page_errors)
    finally:
        stop_lab(lab, home)
