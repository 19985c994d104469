"""Speed and memory of the Streamlit app on this machine; a benchmark, not a test.

    python scripts/bench_app.py                       # the shipped checkpoints/
    python scripts/bench_app.py --fixture /tmp/appfix # tiny fixture checkpoints (built there if absent)

Measures, on a live `streamlit run` server driven by headless Chromium (devkit.browser):
- page switches in one browser session (sidebar link clicks): the first visit of each page
  ("cold": imports, model loads, first attributions) and later visits ("warm"); the bar is < 1 s warm;
- the server's memory once every page was visited with both models, from /proc/<pid>/status:
  VmRSS (= RssAnon + RssFile + RssShmem), VmHWM (peak), and the smaps_rollup totals; the bar is 690 MB;
and in this process, with the app's own functions:
- Integrated Gradients (50 steps) on ResNet18 for one test image (bar < 1.5 s), and the other methods.
Stop other jobs first: both the server and Chromium compete for the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devkit.app_fixture import build_app_checkpoints  # noqa: E402
from devkit.browser import chromium, click_model, click_page, proc_memory, streamlit_server  # noqa: E402

from cifar.checkpoints import run_files  # noqa: E402
from cifar.models import MODELS  # noqa: E402
from cifar_app.nav import PAGES as NAV_PAGES, heading  # noqa: E402

# url_path → (title with the cnn picked, with resnet18 picked); Home is "/".
PAGES = {p.url_path: tuple(heading(p.key, m.title) for m in MODELS.values()) for p in NAV_PAGES}
RSS_BAR_MB, SWITCH_BAR_S, IG_BAR_S = 690, 1.0, 1.5


def time_attributions(ckpt: Path, data: Path, repeats: int) -> list[dict]:
    """Seconds per explain.attribute call with the app's default parameters, median of `repeats` after a warm-up."""
    import torch

    from cifar import explain
    from cifar_app.store import Paths, load_checkpoint, load_test_images

    paths = Paths(ckpt, data)
    image = load_test_images(paths).images[0].copy()
    x = explain.to_input(image)
    rows = []
    for model in ("resnet18", "cnn"):
        net, _ = load_checkpoint(model, paths)
        target = int(explain.predict(net, x)[0].argmax())
        for method in explain.METHODS:
            explain.attribute(net, x, target, method)  # warm-up: builds the explanation copy, JIT paths
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                explain.attribute(net, x, target, method)
                times.append(time.perf_counter() - t0)
            rows.append({"model": model, "method": method, "median_s": statistics.median(times), "min_s": min(times)})
    rows.append({"threads": torch.get_num_threads()})
    return rows


def bench_server(ckpt: Path, data: Path, rounds: int, shots: Path | None) -> dict:
    env = {"CIFAR_CHECKPOINTS": str(ckpt), "CIFAR10_DIR": str(data)}
    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    switches: dict[str, list[float]] = {}
    with streamlit_server(env, log) as (url, proc), chromium() as browser:
        mem = {"after start": proc_memory(proc.pid)}
        t0 = time.perf_counter()
        browser.call("Page.navigate", url=f"{url}/")
        browser.wait_title(PAGES[""][0], 600)
        switches["first load (home)"] = [time.perf_counter() - t0]
        for which, (model, title) in enumerate((("cnn", "CustomCNN"), ("resnet18", "ResNet18"))):
            click_page(browser, "metrics")
            browser.wait_title("Metrics · ", 600)
            click_model(browser, title)
            browser.wait_title(PAGES["metrics"][which], 600)
            for r in range(rounds + 1):
                for path, titles in PAGES.items():
                    t0 = time.perf_counter()
                    click_page(browser, path)
                    browser.wait_title(titles[which], 600)
                    dt = time.perf_counter() - t0
                    kind = "cold" if r == 0 else "warm"
                    switches.setdefault(f"{kind} {model}", []).append(dt)
                    switches.setdefault(f"{kind} {model} → /{path}", []).append(dt)
                    if shots is not None and r == 0:
                        time.sleep(1.5)
                        browser.screenshot(shots / f"{model}-{path or 'home'}.png")
            mem[f"all pages with {model}"] = proc_memory(proc.pid)
        time.sleep(2)
        mem["idle after both"] = proc_memory(proc.pid)
    return {"switch_s": switches, "memory_mb": mem}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=os.environ.get("CIFAR_CHECKPOINTS", "checkpoints"))
    p.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR", "data"),
                   help="the CIFAR-10 folder the app should use (a missing one means: the demo bundle)")
    p.add_argument("--fixture", default=None, help="use (or build) tiny fixture checkpoints in this folder instead")
    p.add_argument("--rounds", type=int, default=2, help="warm passes over all pages per model")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per attribution method")
    p.add_argument("--screenshots", default=None, help="save a screenshot of each page's first visit here")
    p.add_argument("--json", default=None, help="write the results here too")
    args = p.parse_args(argv)

    ckpt, data = Path(args.checkpoints), Path(args.data_dir)
    if args.fixture:
        root = Path(args.fixture)
        ready = all(run_files(root / "checkpoints", m).weights.is_file() for m in MODELS)
        ckpt = root / "checkpoints" if ready else build_app_checkpoints(root)
        data = root / "no-data"
    missing = [m for m in MODELS if not run_files(ckpt, m).weights.is_file()]
    if missing:
        print(f"error: {ckpt} lacks {', '.join(missing)}.safetensors; pass --fixture DIR to bench on tiny ones",
              file=sys.stderr)
        return 2
    shots = Path(args.screenshots) if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)

    result = {"checkpoints": str(ckpt), "data": str(data), "cpus": os.cpu_count()}
    result.update(bench_server(ckpt, data, args.rounds, shots))
    result["attribution_s"] = time_attributions(ckpt, data, args.repeats)

    print(f"\ncheckpoints {ckpt}, data {data}, {os.cpu_count()} CPUs")
    print("\npage switches (s)                               median    max")
    for name, ts in result["switch_s"].items():
        if "→" not in name:
            print(f"  {name:44s} {statistics.median(ts):6.2f} {max(ts):6.2f}")
    warm = [t for k, ts in result["switch_s"].items() if k.startswith("warm ") and "→" in k for t in ts]
    slowest = max(((statistics.median(ts), k) for k, ts in result["switch_s"].items() if k.startswith("warm ") and "→" in k))
    print(f"  warm switches: max {max(warm):.2f} s (bar {SWITCH_BAR_S} s); slowest page median {slowest[0]:.2f} s: {slowest[1]}")
    print("\nserver memory (MB)      " + "  ".join(f"{k:>9s}" for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Pss")))
    for stage, m in result["memory_mb"].items():
        print(f"  {stage:22s}" + "  ".join(f"{m.get(k, float('nan')):9.0f}" for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Pss")))
    final = result["memory_mb"]["all pages with resnet18"]
    print(f"  bar {RSS_BAR_MB} MB: VmRSS {final['VmRSS']:.0f} MB, of which anonymous {final['RssAnon']:.0f} MB")
    methods = [r["method"] for r in result["attribution_s"] if r.get("model") == "resnet18"]
    print("\nattributions (s, median)  " + "  ".join(f"{m[:12]:>12s}" for m in methods))
    for model in ("resnet18", "cnn"):
        rows = [r for r in result["attribution_s"] if r.get("model") == model]
        print(f"  {model:24s}" + "  ".join(f"{r['median_s']:12.3f}" for r in rows))
    ig = next(r for r in result["attribution_s"] if r.get("model") == "resnet18" and r["method"] == "Integrated Gradients")
    print(f"  IG 50 steps on ResNet18: {ig['median_s']:.3f} s (bar {IG_BAR_S} s), torch threads {result['attribution_s'][-1]['threads']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
