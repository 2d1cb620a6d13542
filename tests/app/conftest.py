"""The running app for the browser and load tests: ``python app.py`` on a free loopback port with the tiny model
folder (one server per test session), and Debian's Chromium driven by Playwright (no browser download).

Both are installed by ``bash scripts/setup.sh --dev`` (``apt-get install chromium`` as root, ``pip install
playwright``); where they cannot be, the tests skip with that reason (pytest prints it: ``-rs``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Debian's package; override with $PIXAL3D_CHROMIUM
CHROMIUM = os.environ.get("PIXAL3D_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: the settings the tests run with: the tiny networks are fast at one step; keep every fragment
TURNTABLE_FRAMES = 8


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, timeout: float = 5.0) -> bool:
    """Whether the app at ``url`` serves its API description."""
    try:
        with urllib.request.urlopen(url + "gradio_api/info", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class AppServer:
    """A ``python app.py`` subprocess: ``url``, ``process``, ``log`` (its stdout + stderr file), ``out_dir``."""

    def __init__(self, model: Path, folder: Path, concurrency: int = 1):
        pytest.importorskip("gradio", reason="the app needs gradio (pip install -e .[app])")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.out_dir = folder / "outputs"
        self.log = folder / "app.log"
        env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        command = [sys.executable, str(REPO / "app.py"), "--model", str(model), "--host", "127.0.0.1",
                   "--port", str(self.port), "--device", "cpu", "--concurrency", str(concurrency),
                   "--turntable-frames", str(TURNTABLE_FRAMES), "--output-dir", str(self.out_dir)]
        self._log_file = open(self.log, "w")
        self.process = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT, env=env, cwd=folder)
        deadline = time.monotonic() + 180
        while not answers(self.url, 2.0):
            if self.process.poll() is not None:
                raise AssertionError(f"app.py exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"app.py did not answer within 180 s:\n{self.log_text()[-3000:]}")
            time.sleep(0.5)

    def log_text(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self._log_file.close()


@pytest.fixture(scope="session")
def app_server(tiny_model, tmp_path_factory):
    """One running app for the session (tiny model, concurrency 1: the app's default on CPU)."""
    started = time.perf_counter()
    server = AppServer(tiny_model, tmp_path_factory.mktemp("app_server"))
    print(f"app.py answered on {server.url} after {time.perf_counter() - started:.1f} s")
    yield server
    server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]


@pytest.fixture(scope="session")
def chromium():
    """Chromium from Debian, launched by Playwright with the CI flags (skips with the reason where missing)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright, or bash scripts/setup.sh --dev)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or bash scripts/setup.sh --dev as root; "
                    f"or set PIXAL3D_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def copy_artifact(path: Path, env_var: str) -> None:
    """Also copy a test's artifact (screenshot, load report) to ``$env_var`` when it is set."""
    target = os.environ.get(env_var)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        print(f"copied {path.name} to {target}")
