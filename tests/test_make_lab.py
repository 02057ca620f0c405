"""The README's first command, `make lab`, serves JupyterLab on 127.0.0.1 and the
URL it prints opens lesson 00 (on a machine without a browser of its own, that
URL is all a learner gets)."""

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"(http://127\.0\.0\.1:\d+/\S+)")


@pytest.mark.timeout(120)
def test_make_lab_prints_a_url_that_opens_lesson_00():
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("make lab uses the project's .venv; `make test` creates it")
    env = {**os.environ, "BROWSER": "true"}  # nothing to open here
    lab = subprocess.Popen(
        ["make", "--no-print-directory", "lab", "LAB_ARGS=--no-browser --ServerApp.port=0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        deadline, url, printed = time.monotonic() + 90, None, []
        while url is None and time.monotonic() < deadline:
            line = lab.stdout.readline()
            printed.append(line)
            if not line:
                break
            if (found := URL.search(line)) and "token=" in line:
                url = found.group(1)
        assert url, "make lab printed no URL:\n" + "".join(printed)
        assert "/lab/tree/00_start_here.ipynb?token=" in url
        # Jupyter prints its URL a moment before it listens when it chose the port
        # itself (measured: refused in 2 of 5 runs, accepted 0.1 s later).
        while True:
            try:
                response = urllib.request.urlopen(url, timeout=30)  # 127.0.0.1 only
                break
            except urllib.error.URLError as exc:
                if not isinstance(exc.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                    raise AssertionError("".join(printed)) from exc
                time.sleep(0.1)
        with response:
            assert response.status == 200
            assert "JupyterLab" in response.read().decode()
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        lab.stdout.close()
