"""The app through AppTest: no hook is left on a model or its explanation copy after any page, and
the Metrics page's ECE is the 15-bin one its help text promises.

The hook check runs after every page, in the order of the registry, for both models: the old rerun
check looked only at the end, after the last page had rebuilt a clean copy (cifar.explain rebuilds a
copy that carries hooks), so a capture that never removed its hooks still passed it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cifar_app.nav import PAGE_FILES, PAGES  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 300  # s: the first run imports torch and loads both models; CI machines can be slow


def hooks_left() -> dict[str, int]:
    """Hooks on each cached model and on its explanation copy (when one exists)."""
    from cifar import explain
    from cifar_app import cache

    out = {}
    for model in ("cnn", "resnet18"):
        net = cache.load_model(model)  # the very object the app's cache holds
        out[model] = explain.count_hooks(net)
        twin = explain._COPIES.get(net)
        if twin is not None:
            out[f"{model} copy"] = explain.count_hooks(twin[1])
    return out


def test_no_hook_is_left_after_any_page(app_env):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    opened = []
    for model in ("cnn", "resnet18"):
        for spec in PAGES:
            at.session_state["model"] = model  # the sidebar picker's state (AppTest drops the sidebar on a switch)
            at.switch_page(PAGE_FILES[spec.key]).run()
            assert not at.exception, (spec.key, model, [e.value for e in at.exception])
            left = hooks_left()
            assert not any(left.values()), f"after {spec.key} ({model}): {left}"
            opened.append(spec.key)
    assert {"feature_maps", "attributions"} <= set(opened)  # the pages that hook models


@pytest.mark.parametrize("stored", [True, False], ids=["metrics.json", "recomputed"])
def test_the_metrics_page_shows_the_15_bin_ece(app_env, tmp_path, monkeypatch, stored):
    # Predictions whose confidences (0.66 right, 0.67 wrong, half each) share a bin of width 1/10 or 1/20
    # but not one of 1/15: ECE is ½·0.34 + ½·0.67 = 0.505 with 15 bins, 0.165 with 10 or 20.
    import shutil

    from cifar import CLASSES
    from cifar.checkpoints import run_files
    from cifar.evaluate import write_evaluation

    folder = shutil.copytree(app_env, tmp_path / "checkpoints")
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(folder))
    probs = np.empty((100, 10))
    for row in range(100):
        top = 0.66 if row % 2 == 0 else 0.67
        probs[row] = (1 - top) / 9
        probs[row, 0] = top
    labels = np.where(np.arange(100) % 2 == 0, 0, 1)
    files = run_files(folder, "cnn")
    write_evaluation(files.weights, np.log(probs), labels, CLASSES)
    if not stored:
        files.metrics.unlink()  # the app then computes the summary itself
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.session_state["model"] = "cnn"
    at.switch_page(PAGE_FILES["metrics"]).run()
    assert not at.exception, [e.value for e in at.exception]
    (ece,) = [m for m in at.metric if m.label == "calibration error (ECE)"]
    assert ece.value == "0.505"
    assert "15 confidence bins" in ece.proto.help
