"""Where the Streamlit server's memory goes; a benchmark, not a test.

    .venv-cpu/bin/python scripts/bench_memory.py                     # shipped checkpoints, demo bundle
    .venv/bin/python scripts/bench_memory.py --env MALLOC_ARENA_MAX=2 --json /tmp/m.json

A CPU-only venv like the Pipfile's (README, "Memory"): torch's CPU wheel, the Pipfile's packages at
requirements.txt's pins, no torchvision or scikit-learn.

The server runs with the Python that runs this script (so pick the venv with the interpreter), on the
shipped checkpoints/ and CIFAR10_DIR=/nonexistent (the demo bundle), driven by one headless Chromium:

1. one session (one tab) opens every page with both models (the sidebar's "model" radio): Home,
   Overview, Training, Metrics, Misclassifications (an "Explain" button → Feature maps), Feature maps,
   Attributions (the grid: all six methods × both models), Try your own image (uploads a 2000×1500
   JPEG on the first pass); the server's memory is read then;
2. --sessions (8) more users, each in a browser of their own (a background tab does not draw some
   widgets, such as the file uploader, so tabs of one browser would not finish), do the same at once, each clicking another gallery image (so the explain
   caches fill as with 8 different users); peak RSS is sampled every 0.2 s, and VmHWM is reset first
   (/proc/PID/clear_refs) so it is this phase's peak;
3. every browser is closed; memory is read 5 s and 60 s later, and (unless --no-late) after Streamlit's
   server.disconnectedSessionTTL (default 120 s) and once more after a new session opened "/".

Memory is the server process's /proc/PID/status (VmRSS = RssAnon + RssFile + RssShmem; VmHWM, the
peak) and smaps_rollup, plus Streamlit's own /_stcore/metrics (cache and session-state bytes).
Bars (issue): VmRSS < 690 MB with 8 sessions; 60 s after close within 50 MB of the one-session figure.
Stop other jobs first: the server and Chromium share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cifar.models import MODELS  # noqa: E402
from cifar_app.nav import PAGES as NAV_PAGES, heading  # noqa: E402
from devkit.browser import (Browser, chromium, click_model, click_page, proc_memory,  # noqa: E402
                            streamlit_server, wait_for)

# url path → page title with each model picked; Home is "/".
PAGES = {p.url_path: tuple(heading(p.key, m.title) for m in MODELS.values()) for p in NAV_PAGES}
RSS_BAR_MB, CLOSE_BAR_MB = 690, 50
TIMEOUT = 600  # s per page: 8 cold sessions on 2 cores are slow


# ------------------------------------------------------------------------------ memory readings


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (proc(5): writing 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def streamlit_stats(url: str) -> dict[str, float]:
    """MB by family and cache from Streamlit's /_stcore/metrics (OpenMetrics text), e.g.
    'cache st_cache_data _attribution' or 'session_state'; plus the session counts."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=60) as r:
            text = r.read().decode()
    except OSError as e:
        return {"error": str(e)}
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$", line) or re.match(r"^(\w+)()\s+([0-9.eE+-]+)$", line)
        if not m:
            continue
        family, labels, value = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))), float(m.group(3))
        if family == "cache_memory_bytes":
            name = labels.get("cache", "?").split(".")[-1]
            key = f"{labels.get('cache_type', '?')} {name}"
            out[key] = out.get(key, 0) + value / 2**20
        elif family in ("session_events_total", "active_sessions", "session_duration_seconds"):
            out[f"{family} {labels.get('type', '')}".strip()] = value
    return out


class PeakSampler:
    """VmRSS sampled in a thread while a phase runs → max."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak, self._stop = pid, every, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_memory(self.pid)["VmRSS"])
            except (OSError, KeyError):
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------ one user


def click_explain(browser: Browser, k: int) -> bool:
    """Click the k-th (mod count) "Explain" button of the gallery → True if there was one."""
    return bool(browser.js(f"""(() => {{ const bs = [...document.querySelectorAll('[data-testid="stMain"] button')]
                   .filter(b => b.innerText.includes('Explain')); if (!bs.length) return false;
                   bs[{k} % bs.length].click(); return true; }})()"""))


def upload(browser: Browser, path: Path) -> None:
    found = wait_for(lambda: browser.call("Runtime.evaluate", expression="document.querySelector('input[type=\"file\"]')")
                     ["result"].get("objectId"), 60, "the file input")
    browser.call("DOM.setFileInputFiles", files=[str(path)], objectId=found)
    wait_for(lambda: browser.js("""(() => { const app = document.querySelector('[data-testid="stApp"]');
               return app && app.getAttribute('data-test-script-state') === 'notRunning'
                      && document.body.innerText.includes('what the models see'); })()"""),
             TIMEOUT, "the upload to be shown", interval=0.1)


def visit_everything(browser: Browser, url: str, k: int, photo: Path | None, log: list[str]) -> float:
    """Every page with both models in this tab's session; gallery image k; → seconds."""
    t0 = time.perf_counter()
    browser.call("Page.navigate", url=f"{url}/")
    browser.wait_title(PAGES[""][0], TIMEOUT)
    for which, (model, spec) in enumerate(MODELS.items()):
        title = spec.title
        click_page(browser, "metrics")
        browser.wait_title(heading("metrics"), TIMEOUT)
        click_model(browser, title)
        browser.wait_title(PAGES["metrics"][which], TIMEOUT)
        for path, titles in PAGES.items():
            click_page(browser, path)
            browser.wait_title(titles[which], TIMEOUT)
            if path == "misclassifications":
                if click_explain(browser, k + which):  # → Feature maps with that image
                    browser.wait_title(PAGES["feature-maps"][which], TIMEOUT)
                else:
                    log.append(f"session {k}: no Explain button with {model}")
            if path == "your-image" and which == 0 and photo is not None:
                upload(browser, photo)
    return time.perf_counter() - t0


def make_photo(path: Path, size=(2000, 1500)) -> Path:
    """A phone-sized JPEG (~3 MP, smooth gradient + noise, ~1-2 MB)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)
    return path


# ------------------------------------------------------------------------------ the run


def run(args) -> dict:
    env = {"CIFAR_CHECKPOINTS": str(args.checkpoints), "CIFAR10_DIR": str(args.data_dir)}
    for item in args.env:
        k, _, v = item.partition("=")
        env[k] = v
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    photo = None if args.no_upload else make_photo(tmp / "photo.jpg")
    log_file = tmp / "streamlit.log"
    mem: dict[str, dict] = {}
    notes: list[str] = []
    timing: dict[str, float] = {}

    def read(stage: str, url: str, pid: int, peak: float | None = None) -> None:
        m = proc_memory(pid)
        if peak is not None:
            m["sampled_peak"] = max(peak, m["VmRSS"])
        m["streamlit"] = streamlit_stats(url) if not args.no_stats else {}
        mem[stage] = m
        print(f"  [{time.strftime('%H:%M:%S')}] {stage:34s} VmRSS {m['VmRSS']:6.0f}  VmHWM {m['VmHWM']:6.0f}  "
              f"RssAnon {m['RssAnon']:6.0f}" + (f"  sampled peak {m['sampled_peak']:6.0f}" if peak is not None else ""),
              flush=True)

    with streamlit_server(env, log_file) as (url, proc), ExitStack() as browsers_open:
        pid = proc.pid
        read("after start", url, pid)
        # 1. one session
        first = browsers_open.enter_context(chromium())
        with PeakSampler(pid) as s:
            timing["one session, every page, both models (s)"] = visit_everything(first, url, 0, photo, notes)
        time.sleep(2)
        read("one session: every page, both models", url, pid, s.peak)
        # 2. N sessions at once (the first one stays open)
        reset_peak(pid)
        browsers = [browsers_open.enter_context(chromium()) for _ in range(args.sessions)]
        errors: list[str] = []
        times: list[float] = []

        def user(i: int, b: Browser) -> None:
            try:
                times.append(visit_everything(b, url, i + 1, photo, notes))
            except Exception as e:  # reported, the others go on
                errors.append(f"session {i + 1}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=user, args=(i, b)) for i, b in enumerate(browsers)]
        with PeakSampler(pid) as s:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        timing[f"{args.sessions} sessions at once, slowest (s)"] = max(times) if times else float("nan")
        time.sleep(2)
        read(f"{args.sessions}+1 sessions: every page, both", url, pid, s.peak)
        # 3. close every browser (all sessions disconnect)
        browsers_open.close()
        t_close = time.monotonic()
        for after in (5, 60) + ((args.ttl + 10,) if not args.no_late else ()):
            time.sleep(max(0.0, t_close + after - time.monotonic()))
            read(f"all closed + {after} s", url, pid)
        if not args.no_late:
            # Streamlit's session storage reaps expired sessions only on a write: a new connection.
            with chromium() as b:
                b.call("Page.navigate", url=f"{url}/")
                b.wait_title(PAGES[""][0], TIMEOUT)
            time.sleep(5)
            read("a new session opened / (+5 s)", url, pid)
            time.sleep(35)
            read("a new session opened / (+40 s)", url, pid)
    return {"memory_mb": mem, "timing": timing, "notes": notes, "errors": errors, "env": env,
            "python": sys.executable, "log": str(log_file)}


def table(result: dict, sessions: int) -> str:
    mem = result["memory_mb"]
    cols = ("VmRSS", "sampled_peak", "VmHWM", "RssAnon", "RssFile", "Pss")
    lines = ["stage                                     " + "  ".join(f"{c[:9]:>9s}" for c in cols)]
    for stage, m in mem.items():
        lines.append(f"{stage:40s}  " + "  ".join(f"{m[c]:9.0f}" if c in m else f"{'':9s}" for c in cols))
    one = mem["one session: every page, both models"]
    many = mem[f"{sessions}+1 sessions: every page, both"]
    closed = mem["all closed + 60 s"]
    lines.append(f"bar: {sessions}+1 sessions peak (sampled VmRSS) {many['sampled_peak']:.0f} MB, VmHWM {many['VmHWM']:.0f} MB "
                 f"(< {RSS_BAR_MB}: {'yes' if max(many['sampled_peak'], many['VmHWM']) < RSS_BAR_MB else 'NO'})")
    lines.append(f"bar: 60 s after close {closed['VmRSS']:.0f} MB vs one session {one['VmRSS']:.0f} MB: "
                 f"{closed['VmRSS'] - one['VmRSS']:+.0f} MB (within {CLOSE_BAR_MB}: "
                 f"{'yes' if closed['VmRSS'] - one['VmRSS'] <= CLOSE_BAR_MB else 'NO'})")
    lines.append("streamlit /_stcore/metrics (MB):")
    for stage, m in mem.items():
        st = {k: v for k, v in m.get("streamlit", {}).items() if not k.startswith("session_")}
        lines.append(f"  {stage:38s} " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(st.items()) if v >= 0.05))
    for k, v in result["timing"].items():
        lines.append(f"{k}: {v:.1f}")
    lines.extend(result["notes"])
    if result["errors"]:  # a session that stopped early makes every figure above too low
        lines.append(f"NOT VALID: {len(result['errors'])} of {sessions} sessions did not finish:")
        lines.extend(result["errors"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--data-dir", default="/nonexistent", help="CIFAR10_DIR for the server (missing → demo bundle)")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server, e.g. MALLOC_ARENA_MAX=2")
    p.add_argument("--ttl", type=int, default=120, help="the server's server.disconnectedSessionTTL (s), for --late")
    p.add_argument("--no-late", action="store_true", help="stop 60 s after closing (skip the past-TTL readings)")
    p.add_argument("--no-upload", action="store_true", help="do not upload a photo on Try your own image")
    p.add_argument("--no-stats", action="store_true", help="do not read /_stcore/metrics (it walks the caches)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    for kv in args.env:
        if kv.startswith("STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL="):
            args.ttl = int(kv.split("=", 1)[1])
    import importlib.metadata as md

    versions = {d: md.version(d) for d in ("torch", "streamlit", "captum", "numpy") if _has(md, d)}
    print(f"python {sys.executable}; {versions}; {os.cpu_count()} CPUs; env {args.env}", flush=True)
    result = run(args)
    result["versions"] = versions
    print()
    print(table(result, args.sessions))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 1 if result["errors"] else 0


def _has(md, dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
