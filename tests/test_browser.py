"""Smoke test in a real browser: `streamlit run` on a free port, every page opened in headless Chromium.

Each page must finish its run without an exception box (data-testid="stException") or an error box,
and show its title; a full-page screenshot of each goes to screenshots/ (gitignored) for a human to
look at. Chromium is driven over the DevTools protocol (app_fixtures.chromium), so the test waits
for the app's own "running" indicator to go away instead of guessing a fixed delay. Pages are
reached by URL path (st.Page url_path). Skipped, with the reason, when Chromium is not installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app_fixtures import app_checkpoints_once, chromium, find_chromium, streamlit_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "screenshots"
# url_path → words the page's title holds (streamlit_app.py's st.Page url_paths; the default page,
# Overview, is served at the root).
PAGES = {
    "": "CustomCNN vs ResNet18",
    "training": "Training curves",
    "metrics": "Metrics",
    "misclassifications": "Misclassifications",
    "feature-maps": "Feature maps",
    "attributions": "Attributions",
    "your-image": "Try your own image",
}
# Vega-Lite charts each page must draw (a chart whose spec Streamlit rejects is silently missing).
CHARTS = {"": 1, "training": 3, "metrics": 2}
PAGE_TIMEOUT = 180  # s: the first page imports torch and loads a model on a slow CI machine

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="Chromium is not installed (apt-get install -y chromium)")

EXCEPTIONS_JS = "[...document.querySelectorAll('[data-testid=\"stException\"]')].map(e => e.innerText)"
# Charts actually drawn: Vega leaves the container empty (0 px tall) for a spec it cannot render.
CHARTS_JS = ("[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
             ".filter(e => e.getBoundingClientRect().height > 0).length")
ERRORS_JS = "[...document.querySelectorAll('[data-testid=\"stAlertContentError\"]')].map(e => e.innerText)"


def test_every_page_renders_in_chromium_without_an_exception(tmp_path_factory):
    ckpt = app_checkpoints_once(tmp_path_factory)
    env = {"CIFAR_CHECKPOINTS": str(ckpt), "CIFAR10_DIR": str(tmp_path_factory.mktemp("no-data"))}
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    SHOTS.mkdir(exist_ok=True)
    problems = []
    with streamlit_server(env, log) as (url, proc), chromium() as browser:
        for path, title in PAGES.items():
            browser.call("Page.navigate", url=f"{url}/{path}")
            time.sleep(1.0)  # let the previous page go before polling this one
            try:
                shown = browser.wait_run(PAGE_TIMEOUT, f"page {path}")
                time.sleep(1.5)  # vega-embed draws charts after the run; then make sure no rerun started
                shown = browser.wait_run(PAGE_TIMEOUT, f"page {path} to settle")
            except TimeoutError as e:
                shown = None
                problems.append(str(e))
            browser.screenshot(SHOTS / f"{path or 'overview'}.png")
            exceptions = browser.js(EXCEPTIONS_JS)
            if exceptions:
                problems.append(f"{path}: exception box: {exceptions[0][:500]}")
            if browser.js("document.body.innerText.includes('Page not found')"):
                problems.append(f"{path}: Streamlit says 'Page not found'")
            errors = browser.js(ERRORS_JS)
            if errors:
                problems.append(f"{path}: error box: {errors[0][:300]}")
            charts = browser.js(CHARTS_JS)
            if charts < CHARTS.get(path, 0):
                problems.append(f"{path}: {charts} charts drawn, expected {CHARTS[path]}")
            if shown is not None and title not in shown:
                problems.append(f"{path}: title {shown!r} lacks {title!r}")
        # The hosted demo's memory budget (Pipfile, README): after every page, the server must not have
        # loaded torchvision (~160 MB) or scikit-learn/SciPy (66-131 MB); their native libraries would show here.
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        heavy = [lib for lib in ("torchvision", "sklearn", "scipy") if f"/site-packages/{lib}/" in maps]
        if heavy:
            problems.append(f"the server loaded {', '.join(heavy)}, which the Pipfile for Streamlit Cloud leaves out")
    assert not problems, "\n".join(problems) + f"\nserver log: {log}"
    assert all((SHOTS / f"{p or 'overview'}.png").stat().st_size > 10_000 for p in PAGES)


# Centre of cell (true, pred) of the confusion heatmap (the last chart on the Metrics page): its rect
# marks are SVG paths in data order, which is analysis.confusion_records' order (true-major).
CELL_JS = """((t, p) => {
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const cells = charts[charts.length - 1].querySelectorAll('g.mark-rect.role-mark path');
  const r = cells[t * 10 + p].getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2, cells.length];
})"""
SUBHEADERS_JS = "[...document.querySelectorAll('[data-testid=\"stMain\"] h3')].map(e => e.innerText)"


def test_clicking_a_confusion_cell_opens_its_gallery(tmp_path_factory):
    ckpt = app_checkpoints_once(tmp_path_factory)
    env = {"CIFAR_CHECKPOINTS": str(ckpt), "CIFAR10_DIR": str(tmp_path_factory.mktemp("no-data"))}
    with streamlit_server(env, tmp_path_factory.mktemp("server") / "streamlit.log") as (url, _proc), \
            chromium(height=2000) as browser:
        browser.call("Page.navigate", url=f"{url}/metrics")
        browser.wait_title("Metrics", PAGE_TIMEOUT)
        time.sleep(2)  # vega-embed draws after the run
        true, pred = 3, 5  # cat → dog
        x, y, n_cells = browser.js(f"{CELL_JS}({true}, {pred})")
        assert n_cells == 100
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        wait_for(lambda: "cat → dog" in browser.js(SUBHEADERS_JS), 60, "the cat → dog gallery")
