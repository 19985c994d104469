"""The Streamlit app through streamlit.testing.v1.AppTest, on tiny fixture checkpoints (devkit.app_fixture).

Every page runs without an exception and shows its key content; the gallery matches the confusion
matrix; bad uploads and missing/corrupt files give one clear message; no hook survives reruns.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cifar_app.nav import PAGE_FILES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
PAGES = PAGE_FILES  # the entrypoint builds its st.Page list from the same table
# Generous: the first run imports torch and loads both models; CI machines can be slow.
TIMEOUT = 300


@pytest.fixture
def damaged(ckpt, tmp_path, monkeypatch):
    """A private copy of the checkpoints that a test may break; the app points at it."""
    dst = shutil.copytree(ckpt, tmp_path / "checkpoints")
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(dst))
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data"))
    return dst


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    for k, v in state.items():
        at.session_state[k] = v
    at.switch_page(PAGES[page]).run()
    return at


def texts(at: AppTest) -> str:
    """Everything a user reads on the page, as one string."""
    parts = [e.value for e in (*at.title, *at.header, *at.subheader, *at.markdown, *at.caption, *at.error,
                               *at.info, *at.warning, *at.code)]
    parts += [f"{m.label} {m.value} {m.delta or ''}" for m in at.metric]
    return "\n".join(map(str, parts))


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def commands(at: AppTest) -> str:
    """The shell commands the page shows (st.code blocks)."""
    return "\n".join(c.value for c in at.code)


def cnn_eval(ckpt: Path) -> dict:
    with np.load(ckpt / "cnn.eval.npz") as z:
        return {k: z[k] for k in z.files}


# ------------------------------------------------------------------------------ every page

CONTENT = {
    "home": ["cifar-explain", "test accuracy", "Where to look", "not the official archive"],
    "overview": ["CustomCNN vs ResNet18", "test accuracy", "report", "vs report", "Ours: paper recipe"],
    "training": ["Training curves", "best epoch", "tuning grid", "within 2 epochs per trial, a cap"],
    "metrics": ["Metrics · CustomCNN", "Confusion matrix", "Most confused pairs"],
    "misclassifications": ["Misclassifications · CustomCNN", "classifies"],
    "feature_maps": ["Feature maps · CustomCNN", "strongest"],
    "attributions": ["Attributions", "Integrated Gradients", "Occlusion", "target"],
    "your_image": ["Try your own image", "Upload"],
    "training_images": ["Training images behind it", "Proponents of", "Opponents of", "the demo subset"],
    "embedding": ["Embedding map · CustomCNN", "errors as crosses", "Nearest neighbours in feature space"],
    "label_errors": ["Label-error candidates · CustomCNN", "highest self-influence"],
    "calibration": ["Calibration and out-of-distribution images", "temperature T", "Reliability diagram",
                    "Out-of-distribution detection", "No dataset here (the demo)"],
    "robustness": ["Robustness", "One image, live", "Clean: **", "python -m cifar.robustness"],
    "explanation_check": ["Can I trust this map?", "Sanity check", "Deletion AUC", "Max-sensitivity"],
    "scorecard": ["Explanation scorecard", "python -m cifar.scorecard"],
}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_runs_and_shows_its_content(app_env, page):
    at = open_page(page)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    shown = texts(at)
    for words in CONTENT[page]:
        assert words in shown, f"{page}: {words!r} not shown"


def test_overview_numbers_come_from_the_artifacts(app_env):
    at = open_page("overview")
    acc = (cnn_eval(app_env)["preds"] == cnn_eval(app_env)["labels"]).mean()
    assert f"{acc:.2%}" in [m.value for m in at.metric]
    tables = [d.value for d in at.dataframe]
    acc_table = next(t for t in tables if "metric" in t.columns)
    row = acc_table[acc_table["metric"] == "test accuracy"].iloc[0]
    # one format for every accuracy: two decimals
    assert row["cnn · ours"] == f"{acc:.2%}"
    assert row["cnn · report"] == "87.25%"
    assert row["resnet18 · report"] == "94.64%"
    assert not acc_table.isin(["None"]).any().any() and not acc_table.isna().any().any()


def test_flip_tta_row_appears_only_when_measured(damaged):
    at = open_page("overview")
    acc_table = next(t for t in (d.value for d in at.dataframe) if "metric" in t.columns)
    assert not acc_table["metric"].str.contains("flip TTA").any()
    assert "flip-TTA" not in texts(at)

    path = damaged / "cnn.metrics.json"
    summary = json.loads(path.read_text())
    summary["flip_tta_accuracy"] = 0.4321
    path.write_text(json.dumps(summary))
    at = open_page("overview")
    acc_table = next(t for t in (d.value for d in at.dataframe) if "metric" in t.columns)
    row = acc_table[acc_table["metric"].str.contains("flip TTA")].iloc[0]
    assert row["cnn · ours"] == "43.21%"
    assert row["cnn · report"] == "—"
    assert "The report gives no flip-TTA number (—)" in texts(at)  # why the report's cells are empty


def test_training_page_notes_a_missing_tuning_csv(damaged):
    (damaged / "tune_cnn.csv").unlink()
    at = open_page("training")
    no_exception(at)
    assert "tune_cnn.csv" in texts(at) and "is absent" in texts(at)
    assert any("python -m cifar.tune" in c.value for c in at.code)


def test_no_pages_folder_beside_the_entrypoint():
    # A pages/ folder there puts Streamlit 1.67 in its old multipage mode on a first deep-link visit:
    # the page runs without streamlit_app.py (no navigation, no model picker). See
    # tests/test_browser.py::test_a_pages_folder_breaks_deep_links.
    assert not (ROOT / "pages").exists()
    assert all((ROOT / f).is_file() for f in PAGES.values())


# ------------------------------------------------------------------------------ galleries


def test_gallery_shows_exactly_the_confusion_cell(app_env):
    ev = cnn_eval(app_env)
    from cifar.metrics import confusion

    cm = confusion(ev["labels"], ev["preds"])
    off = [(cm[t, p], t, p) for t in range(10) for p in range(10) if t != p and 0 < cm[t, p] <= 24]
    count, t, p = max(off)
    at = open_page("misclassifications", true=t, pred=p)
    no_exception(at)
    assert len(at.image) == count
    assert f"**{count}**" in texts(at)
    # Most confident first: the captions' first class is the predicted one, in falling order.
    shown = [int(c.split(" · ")[0][1:]) for img in at.image for c in img.captions]
    assert sorted(shown) == np.flatnonzero((ev["labels"] == t) & (ev["preds"] == p)).tolist()
    # ...of the probabilities shown: calibrated by the fixture's temperature (the sidebar switch's default).
    from cifar.calibration import softmax

    t = json.loads((app_env / "cnn.trust.json").read_text())["temperature"]
    conf = softmax(ev["logits"] / t)[shown, p]
    assert (np.diff(conf) <= 0).all()


def test_gallery_starts_on_page_one_for_another_pair(app_env, monkeypatch):
    from cifar_app import widgets

    monkeypatch.setattr(widgets, "PER_PAGE", 4)  # the fixture's cells hold at most 10 images
    ev = cnn_eval(app_env)
    pairs, counts = np.unique(np.stack([ev["labels"], ev["preds"]], 1), axis=0, return_counts=True)
    big = [tuple(map(int, p)) for p, c in zip(pairs, counts) if c > 4]  # cells with a second page
    assert len(big) >= 2, "the fixture needs two cells of more than one gallery page"
    page_input = lambda at: next(n for n in at.number_input if n.key and n.key.startswith("mis_cnn_page"))  # noqa: E731
    at = open_page("misclassifications", true=big[0][0], pred=big[0][1])
    page_input(at).set_value(2).run()
    assert page_input(at).value == 2
    at.selectbox(key="true").set_value(big[1][0])
    at.selectbox(key="pred").set_value(big[1][1]).run()
    no_exception(at)
    assert page_input(at).value == 1


def test_metrics_page_opens_the_selected_cells_gallery(app_env):
    ev = cnn_eval(app_env)
    t, p = int(ev["labels"][0]), int(ev["preds"][0])
    n = int(((ev["labels"] == t) & (ev["preds"] == p)).sum())
    at = open_page("metrics", gallery_pair=(t, p))
    no_exception(at)
    assert len(at.image) == min(n, 12)


def test_right_by_one_wrong_by_the_other_filter(app_env):
    ev = cnn_eval(app_env)
    with np.load(app_env / "resnet18.eval.npz") as z:
        other = z["preds"]
    t = int(ev["labels"][0])
    p = int(ev["preds"][0])
    at = open_page("misclassifications", true=t, pred=p)
    at.toggle(key="mis_only").set_value(True).run()
    no_exception(at)
    mask = (ev["labels"] == t) & (ev["preds"] == p)
    want = mask & ((other == ev["labels"]) if t != p else (other != ev["labels"]))
    assert len(at.image) == min(int(want.sum()), 24)


def test_explain_button_opens_feature_maps_on_that_image(app_env):
    ev = cnn_eval(app_env)
    t, p = int(ev["labels"][0]), int(ev["preds"][0])
    at = open_page("misclassifications", true=t, pred=p)
    button = next(b for b in at.button if b.key and b.key.startswith("mis_cnn_x"))
    index = int(button.key.rsplit("_x", 1)[1])
    button.click().run()
    no_exception(at)
    assert "Feature maps" in at.title[0].value
    assert at.number_input(key="image").value == index


def test_model_picker_persists_across_pages(app_env):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.sidebar.radio(key="model").set_value("resnet18").run()
    at.switch_page(PAGES["metrics"]).run()
    no_exception(at)
    assert at.title[0].value == "Metrics · ResNet18"
    at.switch_page(PAGES["feature_maps"]).run()
    assert at.title[0].value == "Feature maps · ResNet18"


# ------------------------------------------------------------------------------ missing and broken files


def test_missing_checkpoint_names_the_rebuild_command_and_the_other_model_works(damaged):
    (damaged / "resnet18.safetensors").unlink()
    at = open_page("overview")
    no_exception(at)
    assert len(at.error) == 1
    msg = at.error[0].value
    assert "resnet18.safetensors" in msg and "is missing" in msg
    command = commands(at)
    assert "python -m cifar.train --model resnet18 --recipe paper" in command  # the shipped file's recipe
    assert "cp runs/resnet18-paper/resnet18.safetensors" in command
    assert any(m.label == "test accuracy" for m in at.metric)  # the CNN's card still renders

    at = open_page("attributions")
    no_exception(at)
    assert len(at.error) == 1 and "resnet18.safetensors" in at.error[0].value
    assert "python -m cifar.train --model resnet18" in commands(at)
    from cifar.explain import METHODS

    assert len(at.image) >= 1 + 2 * len(METHODS)  # the image, and every method's overlay and map for the CNN


def test_corrupt_checkpoint_is_reported_on_the_model_pages(damaged):
    path = damaged / "resnet18.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.sidebar.radio(key="model").set_value("resnet18").run()
    at.switch_page(PAGES["feature_maps"]).run()
    no_exception(at)
    assert len(at.error) == 1
    assert "resnet18.safetensors" in at.error[0].value and "python -m cifar.train" in commands(at)


def test_missing_evaluation_names_the_evaluate_command(damaged):
    (damaged / "cnn.eval.npz").unlink()
    at = open_page("metrics")
    no_exception(at)
    assert len(at.error) == 1
    assert "predictions" in at.error[0].value and "cnn.eval.npz" in at.error[0].value
    assert f"python -m cifar.evaluate --checkpoint {damaged / 'cnn.safetensors'}" in commands(at)


def test_full_test_set_is_used_when_the_data_is_there(ckpt, monkeypatch):
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("CIFAR10_DIR", str(ckpt.parent / "data"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    no_exception(at)
    assert "the full test set" in "\n".join(c.value for c in at.sidebar.caption)
    at.switch_page(PAGES["misclassifications"]).run()
    no_exception(at)
    assert at.image


def test_with_other_data_here_the_numbers_still_name_their_own(ckpt, damaged, monkeypatch):
    # The metrics say they were measured on the JPEG copy; the data folder holds the synthetic set.
    for model in ("cnn", "resnet18"):
        path = damaged / f"{model}.metrics.json"
        summary = json.loads(path.read_text())
        summary["data"] = {"name": "CIFAR-10 (JPEG re-encoded copy)", "official": False}
        path.write_text(json.dumps(summary))
    monkeypatch.setenv("CIFAR10_DIR", str(ckpt.parent / "data"))  # the fixture's synthetic test set
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "Data: CIFAR-10 (JPEG re-encoded copy)" in "\n".join(c.value for c in at.sidebar.caption)
    at.switch_page(PAGES["feature_maps"]).run()
    no_exception(at)
    assert "not the official archive: its test batch differs" in at.number_input(key="image").help


# ------------------------------------------------------------------------------ uploads


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width × height (a decompression bomb's header)."""
    data = png_bytes(Image.new("L", (1, 1)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


GOOD = {
    "rgba.png": lambda: png_bytes(Image.new("RGBA", (40, 30), (200, 20, 20, 128))),
    "grey.png": lambda: png_bytes(Image.new("L", (64, 64), 90)),
    "palette.gif": lambda: png_bytes(Image.new("RGB", (50, 50), (10, 200, 10)).convert("P"), "GIF"),
    "deep.png": lambda: png_bytes(Image.fromarray(np.full((33, 33), 40000, dtype=np.uint16))),
    "photo.webp": lambda: png_bytes(Image.new("RGB", (48, 36), (20, 20, 220)), "WEBP"),
}
BAD = {
    "notes.png": (lambda: b"this is not an image at all", "not an image"),
    "empty.png": (lambda: b"", "empty"),
    "cut.png": (lambda: png_bytes(Image.effect_noise((64, 64), 80))[:300], "truncated or corrupt"),
    "huge.png": (lambda: png_claiming_size(20000, 20000), "megapixels"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_upload_gives_one_clear_message(app_env, name):
    make, words = BAD[name]
    at = open_page("your_image")
    at.file_uploader[0].set_value((name, make(), "image/png")).run()
    no_exception(at)
    assert len(at.error) == 1
    assert words in at.error[0].value


def test_good_uploads_of_every_mode_are_predicted_by_both_models(app_env):
    at = open_page("your_image")
    for name, make in GOOD.items():
        at.file_uploader[0].set_value((name, make(), "image/png")).run()
        no_exception(at)
        assert not at.error, (name, [e.value for e in at.error])
        assert len(at.get("progress")) == 6, name  # top-3 of both models
    next(b for b in at.button if b.label.startswith("Attributions")).click().run()
    no_exception(at)
    assert at.title[0].value == "Attributions"
    assert "your upload" in texts(at) or any("your upload" in c for i in at.image for c in i.captions)


def test_explain_pages_follow_the_latest_request(app_env):
    """The image an explain page shows is the one last sent to it, whatever earlier visits left behind."""
    at = open_page("feature_maps")  # a first visit with no upload leaves its source key behind
    at.switch_page(PAGES["your_image"]).run()
    at.file_uploader[0].set_value(("red.png", png_bytes(Image.new("RGB", (40, 40), "red")), "image/png")).run()
    next(b for b in at.button if b.label.startswith("Feature maps")).click().run()
    no_exception(at)
    assert at.radio(key="source").value == "upload"

    ev = cnn_eval(app_env)
    at.session_state["true"], at.session_state["pred"] = int(ev["labels"][0]), int(ev["preds"][0])
    at.switch_page(PAGES["misclassifications"]).run()
    button = next(b for b in at.button if b.key and b.key.startswith("mis_cnn_x"))
    index = int(button.key.rsplit("_x", 1)[1])
    button.click().run()
    no_exception(at)
    assert at.radio(key="source").value == "test"
    assert at.number_input(key="image").value == index


# ------------------------------------------------------------------------------ hooks


def test_no_hook_survives_reruns(app_env):
    from cifar import explain
    from cifar_app import cache

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    for model in ("cnn", "resnet18"):
        at.session_state["model"] = model  # the sidebar picker's state (AppTest drops the sidebar after a switch)
        at.switch_page(PAGES["feature_maps"]).run()
        names = list(cache.layer_options(model))  # raw layer names (the picker shows labels)
        assert len(names) == len(at.selectbox(key=f"fm_layer_{model}").options)
        for name in (names[0], names[len(names) // 2], names[-1]):
            at.session_state[f"fm_layer_{model}"] = name
            at.run()
            no_exception(at)
            assert at.selectbox(key=f"fm_layer_{model}").value == name
    at.session_state["at_view"] = "detail"
    at.switch_page(PAGES["attributions"]).run()
    for method in ("Guided Backprop", "Grad-CAM", "Saliency"):
        at.selectbox(key="at_method").set_value(method).run()
        no_exception(at)
    for model in ("cnn", "resnet18"):
        net = cache.load_model(model)  # the very object the app's cache holds
        assert explain.count_hooks(net) == 0
        twin = explain._COPIES.get(net)
        assert twin is not None and explain.count_hooks(twin[1]) == 0


def test_broken_weights_leave_the_prediction_pages_working(damaged):
    """Metrics and Misclassifications need only the saved predictions: they render, and say what is broken."""
    path = damaged / "cnn.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    at = open_page("metrics")
    no_exception(at)
    assert not at.error
    assert "cnn.safetensors" in "\n".join(w.value for w in at.warning)
    assert any(m.label == "test accuracy" for m in at.metric) and at.image  # numbers and the gallery
    at = open_page("misclassifications")
    no_exception(at)
    assert not at.error and at.image
    at = open_page("feature_maps")  # this one needs the weights: one error with its fix
    assert len(at.error) == 1 and "cnn.safetensors" in at.error[0].value
    assert "python -m cifar.train --model cnn" in commands(at)


def link(page: str, **params) -> AppTest:
    """The app opened from a shared address: /<page>?<params>.

    (AppTest opens the default page first: its switch_page before any run misses a page whose URL
    path differs from its file name, such as feature-maps.)"""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params.clear()
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(PAGES[page]).run()
    no_exception(at)
    return at


def test_a_link_carries_every_setting_of_the_attribution_view(app_env):
    at = link("attributions", image="3", view="detail", method="integrated-gradients", steps="32",
              baseline="zero", display="absolute", target="class", cls="dog")
    assert at.selectbox(key="at_method").value == "Integrated Gradients"
    assert at.slider(key="at_steps").value == 32 and at.radio(key="at_baseline").value == "zero"
    assert at.radio(key="at_display").value == "absolute" and at.radio(key="at_target").value == "class"
    assert at.number_input(key="image").value == 3
    shared = dict(at.query_params)  # what the page writes back: the same view
    for k, v in {"image": "3", "method": "integrated-gradients", "steps": "32", "baseline": "zero",
                 "display": "absolute", "cls": "dog", "view": "detail"}.items():
        assert shared[k] == [v] or shared[k] == v, (k, shared.get(k))


def test_a_link_with_half_a_confusion_cell_keeps_the_other_half(app_env):
    ev = cnn_eval(app_env)
    from cifar.metrics import confusion

    cm = confusion(ev["labels"], ev["preds"])
    np.fill_diagonal(cm, -1)
    t, p = np.unravel_index(np.argmax(cm), cm.shape)  # the top pair, which the page opens on
    names = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    other = (int(p) + 1) % 10 if (int(p) + 1) % 10 != int(t) else (int(p) + 2) % 10
    at = link("metrics", pred=names[other])
    assert f"{names[t]} → {names[other]}" in [s.value for s in at.subheader]


def test_an_invalid_link_value_is_ignored_with_a_notice(app_env):
    at = link("feature_maps", image="-5", layer="no-such-layer")
    assert at.number_input(key="image").value == 0
    assert len(at.toast) >= 1 and "Ignored" in at.toast[0].value
