"""The app in a real browser: `streamlit run` on a free port, pages opened by URL in headless Chromium.

Every page of the registry (cifar_app.nav) opens from its own address, with and without query
parameters, with no dialog, exception or error box; a view changed by clicking and typing reopens
from its copied address in a fresh browser; and a pages/ folder beside the entrypoint would break
deep links (why the pages live in app_pages/). Full-page screenshots go to screenshots/ (gitignored)
for a human to look at. Chromium is driven over the DevTools protocol (devkit.browser), waiting for
the app's own "running" indicator instead of guessing delays. Skipped, with the reason, when
Chromium is not installed, except in CI ($CI set), where that fails (devkit.browser.need_chromium).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from cifar_app.nav import PAGES, heading
from devkit.app_fixture import app_checkpoints_once
from devkit.browser import chromium, need_chromium, streamlit_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "screenshots"
# Vega-Lite charts each page must draw (a chart whose spec Streamlit rejects is silently missing).
CHARTS = {"overview": 1, "training": 3, "metrics": 2, "embedding": 1, "calibration": 6, "explanation_check": 4}
# A shared link per page, and what the opened view must then show: (title words, {widget label: value}).
LINKS = {
    "metrics": ("?model=resnet18&true=cat&pred=dog", {}),
    "misclassifications": ("?model=resnet18&true=dog&pred=cat", {"True class": "dog", "Predicted class": "cat"}),
    "feature_maps": ("?model=resnet18&image=7&layer=layer3.0",
                     {"Test image index": "7", "Layer (49 in forward order)": "layer3.0"}),
    "attributions": ("?image=5&view=detail&method=grad-cam&target=class&cls=dog",
                     {"Test image index": "5", "Method": "Grad-CAM"}),
    "training_images": ("?image=9&target=class&cls=cat&k=4", {"Test image index": "9"}),
    "robustness": ("?probe=corruption&corruption=frost&severity=4&image=5", {"Test image index": "5", "Corruption": "Frost"}),
    "explanation_check": ("?image=5&method=sobel-edges", {"Test image index": "5", "Method": "Sobel edges"}),
}
PAGE_TIMEOUT = 180  # s: the first page imports torch and loads a model on a slow CI machine


@pytest.fixture(scope="module", autouse=True)
def _browser():
    # Before the server starts: no Chromium skips this file, saying why, but fails it in CI ($CI set).
    need_chromium()


EXCEPTIONS_JS = "[...document.querySelectorAll('[data-testid=\"stException\"]')].map(e => e.innerText)"
# Charts actually drawn: Vega leaves the container empty (0 px tall) for a spec it cannot render.
CHARTS_JS = ("[...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
             ".filter(e => e.getBoundingClientRect().height > 0).length")
ERRORS_JS = "[...document.querySelectorAll('[data-testid=\"stAlertContentError\"]')].map(e => e.innerText)"
DIALOG_JS = "[...document.querySelectorAll('[role=\"dialog\"]')].map(e => e.innerText)"
# label → shown value of every number input and selectbox (their inputs carry the label as aria-label).
WIDGETS_JS = """Object.fromEntries([...document.querySelectorAll(
  '[data-testid="stNumberInput"] input, [data-testid="stSelectbox"] input')].map(e => [e.getAttribute('aria-label'), e.value]))"""
SIDEBAR_RADIO_JS = "!!document.querySelector('[data-testid=\"stSidebar\"] [data-testid=\"stRadio\"]')"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ckpt = app_checkpoints_once(tmp_path_factory)
    env = {"CIFAR_CHECKPOINTS": str(ckpt), "CIFAR10_DIR": str(tmp_path_factory.mktemp("no-data"))}
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with streamlit_server(env, log) as (url, proc):
        yield url, proc, log


def settle(browser, what: str) -> str | None:
    """Wait for the page's run to end, for charts to draw, and for any rerun to end → the title."""
    time.sleep(1.0)  # let the previous run go before polling this one
    try:
        browser.wait_run(PAGE_TIMEOUT, what)
        time.sleep(1.5)  # vega-embed draws charts after the run; then make sure no rerun started
        return browser.wait_run(PAGE_TIMEOUT, f"{what} to settle")
    except TimeoutError:
        return None


def check_page(browser, key: str, title_words: str, problems: list[str]) -> None:
    shown = browser.js("location.href")
    if browser.js(DIALOG_JS):
        problems.append(f"{shown}: dialog {browser.js(DIALOG_JS)[0][:200]!r}")
    if browser.js("document.body.innerText.includes('Page not found')"):
        problems.append(f"{shown}: Streamlit says 'Page not found'")
    if exceptions := browser.js(EXCEPTIONS_JS):
        problems.append(f"{shown}: exception box: {exceptions[0][:500]}")
    if errors := browser.js(ERRORS_JS):
        problems.append(f"{shown}: error box: {errors[0][:300]}")
    if not browser.js(SIDEBAR_RADIO_JS):
        problems.append(f"{shown}: no model picker in the sidebar (the page ran without the entrypoint)")
    title = browser.js("document.querySelector('[data-testid=\"stMain\"] h1')?.innerText") or ""
    if title_words not in title:
        problems.append(f"{shown}: title {title!r} lacks {title_words!r}")


def test_every_page_opens_by_url_with_and_without_parameters(server):
    url, proc, log = server
    SHOTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with chromium() as browser:
        for spec in PAGES:
            browser.call("Page.navigate", url=f"{url}/{spec.url_path}")
            if settle(browser, spec.key) is None:
                problems.append(f"{spec.key}: the page did not finish")
            browser.screenshot(SHOTS / f"{spec.key}.png")
            check_page(browser, spec.key, heading(spec.key, "CustomCNN"), problems)
            charts = browser.js(CHARTS_JS)
            if charts < CHARTS.get(spec.key, 0):
                problems.append(f"{spec.key}: {charts} charts drawn, expected {CHARTS[spec.key]}")

            query, expect = LINKS.get(spec.key, ("?model=resnet18", {}))
            title_words = heading(spec.key, "ResNet18")
            browser.call("Page.navigate", url=f"{url}/{spec.url_path}{query}")
            settle(browser, f"{spec.key}{query}")
            browser.screenshot(SHOTS / f"{spec.key}-link.png")
            check_page(browser, spec.key, title_words, problems)
            widgets = browser.js(WIDGETS_JS)
            for label, value in expect.items():
                if not str(widgets.get(label, "")).startswith(value):
                    problems.append(f"{spec.key}{query}: {label!r} shows {widgets.get(label)!r}, not {value!r}")
        # The hosted demo's memory budget (Pipfile, README): after every page, the server must not have
        # loaded torchvision (~160 MB) or scikit-learn/SciPy (66-131 MB); their native libraries would show here.
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        heavy = [lib for lib in ("torchvision", "sklearn", "scipy") if f"/site-packages/{lib}/" in maps]
        if heavy:
            problems.append(f"the server loaded {', '.join(heavy)}, which the Pipfile for Streamlit Cloud leaves out")
    assert not problems, "\n".join(problems) + f"\nserver log: {log}"


# ------------------------------------------------------------------------------ a copied URL reproduces the view


def click_text(browser, selector: str, text: str) -> None:
    """Click the element matching `selector` whose text is `text`."""
    found = browser.js(f"""(() => {{
      const el = [...document.querySelectorAll({json.dumps(selector)})].find(e => e.innerText.trim() === {json.dumps(text)});
      if (el) el.click();
      return !!el;
    }})()""")
    assert found, f"nothing like {selector} reads {text!r}"


def type_into(browser, label: str, text: str) -> None:
    """Focus the input labelled `label`, replace its text with `text` and press Enter (as a user types)."""
    assert browser.js(f"""(() => {{
      const el = document.querySelector('input[aria-label={json.dumps(label)}]');
      if (!el) return false;
      el.focus(); el.select(); return true;
    }})()"""), f"no input labelled {label!r}"
    browser.call("Input.insertText", text=text)
    time.sleep(0.3)
    for kind in ("keyDown", "keyUp"):
        browser.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)


def view_of(browser) -> dict:
    return {"title": browser.js("document.querySelector('[data-testid=\"stMain\"] h1')?.innerText"),
            "widgets": browser.js(WIDGETS_JS)}


# A user's clicks and keystrokes: (what, selector or input label, text). Each waits for the rerun it causes.
ON_FEATURE_MAPS = [("click", '[data-testid="stSidebar"] [data-testid="stRadio"] label', "ResNet18"),
                   ("type", "Test image index", "42"),
                   ("type", "Layer (49 in forward order)", "layer2.1 ·")]
TO_ATTRIBUTIONS = [("click", '[data-testid="stSidebarNav"] a span', "Attributions"),  # same session: the image goes along
                   ("click", '[data-testid="stButtonGroup"] button', "One method in detail"),
                   ("type", "Method", "Occlusion"),
                   ("click", '[data-testid="stRadio"] label', "a class I pick")]


def act(browser, steps) -> tuple[str, dict]:
    """Do the steps as a user would → (the address bar, the view)."""
    for kind, where, text in steps:
        (click_text if kind == "click" else type_into)(browser, where, text)
        settle(browser, f"{kind} {text}")
    return browser.js("location.href"), view_of(browser)


def test_a_copied_url_reproduces_the_view(server):
    url, _proc, log = server
    with chromium() as browser:
        browser.call("Page.navigate", url=f"{url}/feature-maps")
        settle(browser, "feature maps")
        maps_url, maps_view = act(browser, ON_FEATURE_MAPS)
        attr_url, attr_view = act(browser, TO_ATTRIBUTIONS)

    assert maps_view["title"] == "Feature maps · ResNet18"
    assert maps_view["widgets"]["Test image index"] == "42"
    assert maps_view["widgets"]["Layer (49 in forward order)"].startswith("layer2.1 ·")
    assert "model=resnet18" in maps_url and "image=42" in maps_url and "layer=layer2.1" in maps_url
    assert attr_view["widgets"]["Method"] == "Occlusion" and attr_view["widgets"]["Test image index"] == "42"
    assert "method=occlusion" in attr_url and "target=class" in attr_url

    with chromium() as fresh:  # another browser: nothing but the address is shared
        for copied, view in ((maps_url, maps_view), (attr_url, attr_view)):
            fresh.call("Page.navigate", url=copied)
            settle(fresh, copied)
            assert view_of(fresh) == view, f"{copied} reopened differently (server log: {log})"
            assert fresh.js("location.href") == copied


# ------------------------------------------------------------------------------ why app_pages/, not pages/

ENTRY = """
import streamlit as st
st.set_page_config(page_title="layout probe")
page = st.navigation([st.Page("{folder}/home.py", title="Home", default=True),
                      st.Page("{folder}/metrics.py", title="Metrics", url_path="metrics")])
st.sidebar.radio("Model", ["cnn", "resnet18"], key="model")
page.run()
"""


@pytest.mark.parametrize("folder, works", [("app_pages", True), ("pages", False)])
def test_a_pages_folder_breaks_deep_links(tmp_path, folder, works):
    """Streamlit 1.67: with pages/ beside the entrypoint, a deep link that is a fresh server's first request
    runs the page file alone (no sidebar, no page config). If this starts passing for pages/ (works=False
    fails), a Streamlit upgrade fixed it and the pages may move to the pages/ the design names."""
    (tmp_path / folder).mkdir()
    (tmp_path / "streamlit_app.py").write_text(textwrap.dedent(ENTRY.format(folder=folder)))
    for name, title in (("home", "Home page"), ("metrics", "Metrics page")):
        (tmp_path / folder / f"{name}.py").write_text(f"import streamlit as st\nst.title({title!r})\n")
    with streamlit_server({}, tmp_path / "streamlit.log", cwd=tmp_path) as (url, _proc), chromium() as browser:
        browser.call("Page.navigate", url=f"{url}/metrics")
        wait_for(lambda: browser.js("document.querySelector('h1')?.innerText") == "Metrics page", PAGE_TIMEOUT,
                 "the metrics page")
        time.sleep(1.0)
        picker, tab = browser.js(SIDEBAR_RADIO_JS), browser.js("document.title")
    assert (picker, tab == "layout probe") == (works, works), (folder, picker, tab)


# ------------------------------------------------------------------------------ a click on the confusion matrix

# Centre of cell (true, pred) of the confusion heatmap (the last chart on the Metrics page): its rect
# marks are SVG paths in data order, which is tables.confusion_records' order (true-major).
CELL_JS = """((t, p) => {
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const cells = charts[charts.length - 1].querySelectorAll('g.mark-rect.role-mark path');
  const r = cells[t * 10 + p].getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2, cells.length];
})"""
SUBHEADERS_JS = "[...document.querySelectorAll('[data-testid=\"stMain\"] h3')].map(e => e.innerText)"


def test_clicking_a_confusion_cell_opens_its_gallery(server):
    url, _proc, _log = server
    with chromium(height=2000) as browser:
        browser.call("Page.navigate", url=f"{url}/metrics")
        browser.wait_title("Metrics", PAGE_TIMEOUT)
        time.sleep(2)  # vega-embed draws after the run
        true, pred = 3, 5  # cat → dog
        x, y, n_cells = browser.js(f"{CELL_JS}({true}, {pred})")
        assert n_cells == 100
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        wait_for(lambda: "cat → dog" in browser.js(SUBHEADERS_JS), 60, "the cat → dog gallery")
        wait_for(lambda: "true=cat&pred=dog" in browser.js("location.href"), 30, "the cell in the address")


# ------------------------------------------------------------------------------ a row of the pairs table

# The row-marker checkbox of row `i` of the last dataframe on the page (the Most confused pairs table).
# The grid draws on a canvas, so its rows are found by geometry: a header and the rows, all equally tall.
ROW_JS = """((i, n) => {
  const tables = [...document.querySelectorAll('[data-testid="stDataFrame"]')];
  const r = tables[tables.length - 1].getBoundingClientRect();
  const h = r.height / (n + 1);
  return [r.x + 15, r.y + h * (i + 1.5)];
})"""


def test_selecting_a_pairs_row_opens_its_gallery(server, tmp_path_factory):
    import numpy as np

    from cifar.evaluate import load_evaluation
    from cifar_app.tables import confused_pairs

    url, _proc, _log = server
    ev = load_evaluation(app_checkpoints_once(tmp_path_factory) / "cnn.safetensors")  # the server's checkpoints
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (ev["labels"], ev["preds"]), 1)
    pairs = confused_pairs(cm, 10)  # the table's rows, in its order
    assert len(pairs) > 2
    row = 2  # not the first row, which the page shows before any selection
    with chromium(height=2000) as browser:
        browser.call("Page.navigate", url=f"{url}/metrics")
        browser.wait_title("Metrics", PAGE_TIMEOUT)
        time.sleep(2)
        assert browser.js(SUBHEADERS_JS)[-1] == pairs[0]["pair"]
        x, y = browser.js(f"{ROW_JS}({row}, {len(pairs)})")
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        wait_for(lambda: pairs[row]["pair"] in browser.js(SUBHEADERS_JS), 60, f"the {pairs[row]['pair']} gallery")
        true, pred = pairs[row]["pair"].split(" → ")
        wait_for(lambda: f"true={true}&pred={pred}" in browser.js("location.href"), 30, "the pair in the address")
        assert browser.js("document.body.innerText.includes('classifies')")  # the gallery's own sentence
