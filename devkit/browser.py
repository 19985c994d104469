"""A live `streamlit run` server and headless Chromium over the DevTools protocol.

Shared by tests/test_browser.py and scripts/bench_app.py: the tests and the benchmark drive the app
as a user would, with the same helpers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# The page's script run is over → its title: Streamlit marks the app root with
# data-test-script-state ("running" while a script runs, "notRunning" after it), as its own e2e tests read.
RUN_DONE_JS = """(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const h1 = document.querySelector('[data-testid="stMain"] h1');
  const state = app && app.getAttribute('data-test-script-state');
  return h1 && state === 'notRunning' && document.readyState === 'complete' ? h1.innerText : null;
})()"""


def find_chromium() -> str | None:
    """The browser to drive: $CHROMIUM when set (None if it is not a file), else the first on PATH."""
    import os
    import shutil as _sh

    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"] if Path(os.environ["CHROMIUM"]).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if _sh.which(name):
            return _sh.which(name)
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def in_ci() -> bool:
    """Whether this runs in CI: $CI set to anything but empty, 0, false or no (CI services set CI=true)."""
    import os

    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


MISSING_CHROMIUM = "Chromium is not installed (apt-get install -y chromium, or set $CHROMIUM to the browser)"


def need_chromium() -> str:
    """Chromium's path, for tests that drive it. Without it such a test skips, saying why; in CI it
    fails instead, so that a CI run cannot lose the browser checks (deep links, heatmap clicks, the
    server's imports) and still pass."""
    import pytest

    binary = find_chromium()
    if binary is None:
        if in_ci():
            pytest.fail(f"{MISSING_CHROMIUM}; CI must run the browser tests", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)
    return binary


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    """Call check() until it returns something truthy; return that, or raise TimeoutError."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _stop(proc: "subprocess.Popen") -> None:
    """Terminate a child process, killing it if it has not exited within 10 s."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def streamlit_server(env: dict[str, str], log: Path, timeout: float = 120,
                     cwd: Path = ROOT) -> Iterator[tuple[str, "subprocess.Popen"]]:
    """`streamlit run streamlit_app.py` in `cwd` (default: this repository) on a free localhost port →
    (base URL, process); stopped on exit."""
    import os
    import subprocess
    import urllib.request

    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{Path(log).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                return r.read().strip() == b"ok"
        except OSError:
            return False

    try:
        wait_for(healthy, timeout, "the Streamlit server")
        yield url, proc
    finally:
        _stop(proc)


class Browser:
    """Just enough of the DevTools protocol (over `websockets`, a Streamlit dependency) to drive one tab."""

    def __init__(self, ws_url: str, width: int, height: int):
        from websockets.sync.client import connect

        self._conn = connect(ws_url, max_size=None, open_timeout=30)
        self.ws = self._conn.__enter__()  # websockets wants its connections used as context managers
        self.next_id = 0
        self.size = (width, height)
        self.call("Page.enable")
        self.resize(height)

    def call(self, method: str, **params):
        import json

        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # skip events until our answer comes
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        """Evaluate JavaScript in the page → its JSON value."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=height, deviceScaleFactor=1,
                  mobile=False)

    def close(self) -> None:
        self._conn.__exit__(None, None, None)

    def wait_run(self, timeout: float, what: str) -> str:
        """Wait until the app's current script run is over → the page title."""
        return wait_for(lambda: self.js(RUN_DONE_JS), timeout, what, interval=0.05)

    def wait_title(self, words: str, timeout: float) -> str:
        """Wait until a run is over whose page title holds `words` → the title."""
        def done():
            title = self.js(RUN_DONE_JS)
            return title if title and words in title else None

        return wait_for(done, timeout, f"a page titled {words!r}", interval=0.02)

    def screenshot(self, path: Path, max_height: int = 6000) -> None:
        """A PNG of the whole page (up to max_height px tall)."""
        import base64
        import time

        height = self.js("document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 0") or self.size[1]
        self.resize(min(max(int(height), self.size[1]), max_height))
        time.sleep(0.3)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        self.resize(self.size[1])


@contextmanager
def _devtools(width: int, height: int) -> Iterator[int]:
    """A headless Chromium → its DevTools port; stopped, and its profile removed, on exit."""
    import shutil
    import tempfile

    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError(MISSING_CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--window-size={width},{height}", "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        yield int(wait_for(lambda: port_file.is_file() and port_file.read_text().split("\n")[0], 60,
                           "Chromium's DevTools port"))
    finally:
        _stop(proc)
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Browser]:
    """Headless Chromium with one tab under DevTools control; closed on exit."""
    with _devtools(width, height) as port:
        def page_tabs():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                return [t for t in json.load(r) if t.get("type") == "page"]

        tab = wait_for(page_tabs, 30, "a Chromium tab")[0]
        browser = Browser(tab["webSocketDebuggerUrl"], width, height)
        try:
            yield browser
        finally:
            browser.close()


# ------------------------------------------------------------------------------ benchmarks: memory, clicks


def proc_memory(pid: int) -> dict[str, float]:
    """MB: VmRSS, RssAnon, RssFile, RssShmem, VmHWM from status; Pss* and Private* from smaps_rollup."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
            out[key] = int(value.split()[0]) / (1 if key == "Threads" else 1024)
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            if key in ("Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def click_model(browser: Browser, title: str) -> None:
    """Pick a model in the sidebar, by its title."""
    browser.js(f"""[...document.querySelectorAll('[data-testid="stSidebar"] label')]
                   .find(l => l.innerText.trim() === {json.dumps(title)})?.click()""")


def click_page(browser: Browser, path: str, timeout: float = 120) -> None:
    """Open a page through its sidebar link (the session stays), by its URL path ("" = Home).

    Waits for the link: on a busy server the sidebar is drawn a while after the page's title."""
    js = f"""(() => {{ const a = [...document.querySelectorAll('[data-testid="stSidebarNav"] a')]
               .find(a => new URL(a.href).pathname.split('/').pop() === '{path}'); if (a) a.click(); return Boolean(a); }})()"""
    wait_for(lambda: browser.js(js), timeout, f"a sidebar link to /{path}")
