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

from app_fixtures import app_checkpoints_once, chromium, find_chromium, streamlit_server

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
PAGE_TIMEOUT = 180  # s: the first page imports torch and loads a model on a slow CI machine

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="Chromium is not installed (apt-get install -y chromium)")

EXCEPTIONS_JS = "[...document.querySelectorAll('[data-testid=\"stException\"]')].map(e => e.innerText)"
ERRORS_JS = "[...document.querySelectorAll('[data-testid=\"stAlertContentError\"]')].map(e => e.innerText)"


def test_every_page_renders_in_chromium_without_an_exception(tmp_path_factory):
    ckpt = app_checkpoints_once(tmp_path_factory)
    env = {"CIFAR_CHECKPOINTS": str(ckpt), "CIFAR10_DIR": str(tmp_path_factory.mktemp("no-data"))}
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    SHOTS.mkdir(exist_ok=True)
    problems = []
    with streamlit_server(env, log) as (url, _proc), chromium() as browser:
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
            if shown is not None and title not in shown:
                problems.append(f"{path}: title {shown!r} lacks {title!r}")
    assert not problems, "\n".join(problems) + f"\nserver log: {log}"
    assert all((SHOTS / f"{p or 'overview'}.png").stat().st_size > 10_000 for p in PAGES)
