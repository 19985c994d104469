"""A tiny, complete checkpoint folder for the app's tests, the browser test and scripts/bench_app.py.

`build_app_checkpoints(root)` writes, from the synthetic CIFAR-10 of conftest.py:

    root/data/cifar-10-batches-py/...      the synthetic set (100 test images)
    root/checkpoints/cnn.safetensors       CustomCNN, 2 tiny epochs (+ .eval.npz, .metrics.json)
    root/checkpoints/resnet18.safetensors  ResNet18, untrained, made-up history (see train_tiny)
    root/checkpoints/demo_images.npz       a bundle holding all 100 synthetic test images
    root/checkpoints/tune_cnn.csv          a 2×2 lr × batch_size grid as cifar.tune writes it

Both models are barely better than chance, so their confusion matrices have many off-diagonal
cells, which is what the gallery tests need.
"""

from __future__ import annotations

import csv
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
for _p in (TESTS, TESTS.parent):  # conftest.py and cifar/ importable from scripts/ and the command line too
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def _conftest():
    # Imported on use: conftest pins torch to one thread (and OMP_NUM_THREADS=1 for children), which
    # the tests want and scripts/bench_app.py must not inherit unless it builds the fixture.
    import conftest

    return conftest

MODELS = ("cnn", "resnet18")


def train_tiny(model: str, data_root: Path, out_dir: Path) -> dict:
    """A checkpoint + evaluation of one model on the synthetic set, written by cifar.train.finish.

    The CustomCNN really trains (2 epochs of 4 steps, a few CPU seconds). ResNet18 would cost ~30 CPU
    seconds for the same, so it keeps its seeded initial weights and gets a made-up 3-epoch history
    (best epoch 2) instead: the app only reads what finish() writes, and an untrained ResNet still
    has a full confusion matrix, layers to hook and gradients to attribute.
    """
    import torch

    from cifar.config import make_config
    from cifar.data import load_cifar10, make_splits
    from cifar.models import build_model
    from cifar.runtime import Runtime, seed_everything
    from cifar.train import TrainState, finish, fit

    recipe = "paper" if model == "cnn" else "fast"
    VAL_SIZE = _conftest().VAL_SIZE
    cfg = make_config(model, recipe, epochs=2 if model == "cnn" else 3, batch_size=16, limit_train=64,
                      val_size=VAL_SIZE, eval_batch_size=100, precision="fp32", device="cpu", early_stopping=0)
    splits = make_splits(load_cifar10(data_root), cfg.val_size, cfg.split_seed, cfg.limit_train)
    command = (f"python -m cifar.train --model {model} --recipe {recipe} --epochs {cfg.epochs} --batch-size 16 "
               f"--limit-train 64 --val-size {VAL_SIZE} --precision fp32 --device cpu --data-dir {data_root}")
    if model == "cnn":
        return fit(cfg, splits, out_dir, command=command, progress=False, log=lambda _msg: None)
    seed_everything(cfg.seed)
    net = build_model(model, **cfg.builder_kwargs())
    history = [dict(epoch=e, train_loss=tl, train_acc=ta, val_loss=vl, val_acc=va, lr=lr, seconds=1.5)
               for e, tl, ta, vl, va, lr in [(1, 2.2, 0.20, 2.1, 0.25, 0.08), (2, 1.9, 0.35, 1.9, 0.40, 0.20),
                                             (3, 1.6, 0.45, 2.0, 0.35, 0.01)]]
    state = TrainState(epoch=3, history=history, best_epoch=2, best_val_acc=0.40,
                       best_weights={k: v.clone() for k, v in net.state_dict().items()}, wall_time=4.5)
    with torch.no_grad():
        return finish(cfg, splits, out_dir, state, Runtime.decide("cpu", "fp32"), command, log=lambda _msg: None)


def write_tune_csv(path: Path) -> None:
    """A finished 2×2 grid and one failed trial, with cifar.tune's columns."""
    cols = ["lr", "batch_size", "best_val_acc", "best_epoch", "epochs_run", "seconds", "test_acc", "error",
            "run_dir", "config"]
    rows = [
        (0.001, 32, 0.41, 2, 2, 3.0, 0.40, ""),
        (0.001, 64, 0.38, 2, 2, 2.5, 0.37, ""),
        (0.003, 32, 0.35, 1, 2, 3.1, 0.33, ""),
        (0.003, 64, 0.30, 2, 2, 2.4, 0.31, ""),
        (0.1, 64, "", "", "", "", "", "non-finite loss"),
    ]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([*r, f"runs/tune-cnn/t{r[0]}-{r[1]}", "{}"])


def build_app_checkpoints(root: str | Path) -> Path:
    """Write the synthetic data and a complete checkpoint folder under root; return root/checkpoints."""
    from cifar.bundle import write_bundle
    from cifar.data import load_cifar10

    root = Path(root)
    data_root = _conftest().write_fake_cifar10(root / "data")
    ckpt = root / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        run = root / "runs" / model
        train_tiny(model, data_root, run)
        for suffix in (".safetensors", ".eval.npz", ".metrics.json"):
            shutil.copy(run / f"{model}{suffix}", ckpt / f"{model}{suffix}")
    data = load_cifar10(data_root)
    write_bundle(ckpt / "demo_images.npz", data.test_images, data.test_labels, np.arange(len(data.test_labels)))
    write_tune_csv(ckpt / "tune_cnn.csv")
    return ckpt


def copy_checkpoints(src: Path, dst: Path) -> Path:
    """A private copy of a checkpoint folder that a test may damage."""
    shutil.copytree(src, dst)
    return dst


if __name__ == "__main__":
    # python tests/app_fixtures.py /tmp/appfix  → then CIFAR_CHECKPOINTS=/tmp/appfix/checkpoints streamlit run ...
    print(build_app_checkpoints(sys.argv[1] if len(sys.argv) > 1 else "app-fixture"))


_BUILT: dict[str, Path] = {}


def app_checkpoints_once(tmp_path_factory) -> Path:
    """The fixture checkpoint folder, built once per test session (shared by test_app and test_browser).

    Set APP_FIXTURE_DIR to a folder written by `python tests/app_fixtures.py DIR` to reuse it across
    sessions while developing (it is rebuilt when it lacks a file).
    """
    import os

    if "ckpt" not in _BUILT:
        reuse = os.environ.get("APP_FIXTURE_DIR")
        if reuse and all((Path(reuse) / "checkpoints" / f).is_file() for f in
                         ("cnn.safetensors", "resnet18.safetensors", "demo_images.npz", "tune_cnn.csv")):
            _BUILT["ckpt"] = Path(reuse) / "checkpoints"
        else:
            _BUILT["ckpt"] = build_app_checkpoints(tmp_path_factory.mktemp("app"))
    return _BUILT["ckpt"]


# ------------------------------------------------------------------------------ a live server and a browser
# Shared by tests/test_browser.py and scripts/bench_app.py.

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
    import shutil as _sh

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if _sh.which(name):
            return _sh.which(name)
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


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
def streamlit_server(env: dict[str, str], log: Path, timeout: float = 120) -> Iterator[tuple[str, "subprocess.Popen"]]:
    """`streamlit run streamlit_app.py` on a free localhost port → (base URL, process); stopped on exit."""
    import os
    import subprocess
    import urllib.request

    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=TESTS.parent, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
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
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Browser]:
    """Headless Chromium with one tab under DevTools control; closed on exit."""
    import json
    import shutil as _sh
    import subprocess
    import tempfile
    import urllib.request

    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("Chromium is not installed (apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        port = int(wait_for(lambda: port_file.is_file() and port_file.read_text().split("\n")[0], 60,
                            "Chromium's DevTools port"))

        def page_tabs():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                return [t for t in json.load(r) if t.get("type") == "page"]

        tab = wait_for(page_tabs, 30, "a Chromium tab")[0]
        browser = Browser(tab["webSocketDebuggerUrl"], width, height)
        yield browser
    finally:
        if browser is not None:
            browser.close()
        _stop(proc)
        _sh.rmtree(profile, ignore_errors=True)
