"""What every page shares: cached loaders around cifar.app_data, the shared session state, and a few
UI pieces (problem box, gallery). Not a page itself: streamlit_app.py lists the pages explicitly.

Caching (see STYLE.md): models with st.cache_resource (one shared object, never copied); small
artifacts, feature maps and attributions with st.cache_data. Every cache key holds the file's
(mtime, size), so replacing a checkpoint is picked up without restarting the server.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from cifar import SHORT_CLASSES, analysis, app_data
from cifar.app_data import MODELS, TITLES, Paths, Unavailable

PAGE_FILES = {
    "overview": "app_pages/1_overview.py",
    "training": "app_pages/2_training.py",
    "metrics": "app_pages/3_metrics.py",
    "misclassifications": "app_pages/4_misclassifications.py",
    "feature_maps": "app_pages/5_feature_maps.py",
    "attributions": "app_pages/6_attributions.py",
    "your_image": "app_pages/7_your_image.py",
}

# Session-state keys shared between pages (widget keys are per page).
MODEL_KEY = "model"  # the sidebar model picker
PAIR_KEY = "gallery_pair"  # (true, pred) the misclassification gallery opens on
EXPLAIN_KEY = "explain"  # {"source": "test", "index": int} or {"source": "upload"}
UPLOAD_KEY = "upload"  # {"name": str, "pixels": uint8 32×32×3, "preview": uint8 H×W×3}

THUMB_SCALE = 3  # 32×32 → 96×96 gallery thumbnails, nearest neighbour
PER_PAGE = 24


# ------------------------------------------------------------------------------ state


def paths() -> Paths:
    return app_data.app_paths()


def current_model() -> str:
    """The model picked in the sidebar (cnn by default)."""
    model = st.session_state.get(MODEL_KEY, MODELS[0])
    return model if model in MODELS else MODELS[0]


def other_model(model: str) -> str:
    return MODELS[1] if model == MODELS[0] else MODELS[0]


def show_problem(e: Unavailable) -> None:
    """One error box: what is wrong with which file, and the command that fixes it."""
    with st.container():  # the box and its command stay together
        st.error(f"{e.message}" + ("\n\nRebuild it with:" if e.command else ""), icon=":material/error:")
        if e.command:
            st.code(e.command, language="bash", wrap_lines=True)  # wraps in narrow columns, copy button


# ------------------------------------------------------------------------------ cached loaders


@st.cache_data(show_spinner=False, max_entries=8)
def _meta(model: str, ckpt: str, data: str, key: Any) -> dict:
    return app_data.read_meta(model, _paths(ckpt, data))


def _paths(ckpt: str, data: str) -> Paths:
    return Paths(Path(ckpt), Path(data))


def _args(model: str, path_of) -> tuple:
    p = paths()
    return model, str(p.checkpoints), str(p.data), app_data.file_key(path_of(p))


def metadata(model: str) -> dict:
    """Checkpoint metadata (header only). Raises Unavailable."""
    return _meta(*_args(model, lambda p: p.checkpoint(model)))


@st.cache_data(show_spinner="Reading test-set predictions…", max_entries=8)
def _eval(model: str, ckpt: str, data: str, key: Any) -> dict:
    return app_data.load_eval(model, _paths(ckpt, data))


def evaluation(model: str) -> dict[str, np.ndarray]:
    """probs, preds, labels for the test set. Raises Unavailable."""
    return _eval(*_args(model, lambda p: p.evaluation(model)))


@st.cache_data(show_spinner="Computing metrics…", max_entries=8)
def _summary(model: str, ckpt: str, data: str, key: Any) -> dict:
    return app_data.load_summary(model, _paths(ckpt, data))


def summary(model: str) -> dict:
    """metrics.summarize() of the evaluation. Raises Unavailable."""
    p = paths()
    key = (app_data.file_key(p.evaluation(model)), app_data.file_key(p.metrics(model)))
    return _summary(model, str(p.checkpoints), str(p.data), key)


@st.cache_data(show_spinner=False, max_entries=8)
def _shapes(model: str, ckpt: str, data: str, key: Any) -> dict:
    return app_data.tensor_shapes(model, _paths(ckpt, data))


def depth(model: str) -> int | None:
    """Conv + linear layers on the main path, from the checkpoint header."""
    try:
        return analysis.weight_layers(_shapes(*_args(model, lambda p: p.checkpoint(model))))
    except Exception:  # an unreadable header is reported by metadata() already
        return None


@st.cache_resource(show_spinner="Loading model weights…", max_entries=2)
def _model(model: str, ckpt: str, data: str, key: Any):
    net = app_data.load_checkpoint(model, _paths(ckpt, data))[0]
    app_data.release_memory()  # torch and captum are imported now: freeze their objects
    return net


def load_model(model: str):
    """The model in eval mode, shared by all sessions (read-only use). Raises Unavailable."""
    return _model(*_args(model, lambda p: p.checkpoint(model)))


def model_cache_key(model: str) -> tuple:
    """What identifies the loaded weights in other caches (feature maps, attributions)."""
    p = paths()
    return model, str(p.checkpoint(model)), app_data.file_key(p.checkpoint(model))


@st.cache_resource(show_spinner="Loading test images…", max_entries=1)
def _images(ckpt: str, data: str, key: Any):
    images = app_data.load_test_images(_paths(ckpt, data))
    images.images.flags.writeable = False  # shared across sessions
    return images


def test_images():
    """TestImages: the full test set or the demo bundle. Raises Unavailable."""
    p = paths()
    from cifar.data import BATCH_FOLDER, TEST_FILE

    key = (app_data.file_key(p.bundle), app_data.file_key(p.data / BATCH_FOLDER / TEST_FILE))
    return _images(str(p.checkpoints), str(p.data), key)


@st.cache_data(show_spinner=False, max_entries=4)
def _tune_rows(ckpt: str, data: str, key: Any):
    return app_data.read_tune_rows(_paths(ckpt, data))


def tune_rows() -> list[dict[str, str]] | None:
    p = paths()
    return _tune_rows(str(p.checkpoints), str(p.data), app_data.file_key(p.tune_csv))


@st.cache_data(show_spinner=False, max_entries=64)
def _spec(kind: str, key: Any, _make) -> dict:
    return _make().to_dict()


def chart_spec(kind: str, key: Any, make) -> dict:
    """The Vega-Lite dict of an Altair chart built by make(), cached under (kind, key).

    key must identify everything make() reads (file keys, toggles): Altair's build and schema
    validation cost ~0.05 s per chart, which on a 2-core machine is most of a warm page switch.
    Draw it with st.vega_lite_chart(spec=...).
    """
    return _spec(kind, key, make)


# ------------------------------------------------------------------------------ images


def thumbnail(image: np.ndarray, scale: int = THUMB_SCALE) -> np.ndarray:
    return analysis.upscale_nearest(image, scale)


def send_to_explain(index: int, page: str = "feature_maps") -> None:
    """Make test image `index` the explain pages' image and open `page` (ends this run)."""
    st.session_state[EXPLAIN_KEY] = {"source": "test", "index": int(index)}
    st.switch_page(PAGE_FILES[page])


def gallery(indices: np.ndarray, model: str, key: str, per_page: int = PER_PAGE, columns: int = 6) -> None:
    """Thumbnails of test images (upscaled nearest-neighbour) with the model's top-3, and an Explain
    button each. `indices` are test indices in display order; all must be in test_images()."""
    images = test_images()
    ev = evaluation(model)
    n = len(indices)
    if n == 0:
        st.info("No images here.")
        return
    pages = (n + per_page - 1) // per_page
    page = 1
    if pages > 1:
        # The key names this exact list: another pair, order or filter starts again on page 1, at the
        # most telling images, instead of on the page number the last list was left at.
        digest = zlib.crc32(np.ascontiguousarray(indices).tobytes())
        page = st.number_input(f"Page (of {pages}, {per_page} images each)", 1, pages, 1, key=f"{key}_page_{digest:08x}")
    shown = indices[(page - 1) * per_page: page * per_page]
    for row in range(0, len(shown), columns):  # one st.columns per row: rows line up, order is reading order
        for col, idx in zip(st.columns(columns), shown[row: row + columns]):
            with col:
                st.image(thumbnail(images.images[images.position(int(idx))]),
                         caption=f"#{idx} · {analysis.top_k_caption(ev['probs'][idx])}")
                if st.button("Explain", key=f"{key}_x{idx}", icon=":material/search:",
                             help=f"Open test image #{idx} in Feature maps and Attributions"):
                    send_to_explain(int(idx))


def class_name(i: int) -> str:
    return SHORT_CLASSES[i]


def pair_gallery(model: str, true: int, pred: int, key: str, *, other_right: bool | None = None,
                 descending: bool = True, per_page: int | None = None) -> int:
    """The gallery of test images `model` labels `true` → `pred`, most confident first; returns how many.

    other_right: keep only images the other model gets right (True) or wrong (False).
    """
    ev = evaluation(model)
    images = test_images()
    labels = ev["labels"]
    if not analysis.labels_agree(labels, images.labels, images.indices):
        st.error(f"The {TITLES[model]} predictions and the test images ({images.source}) disagree on the labels: "
                 "they come from different test sets. Re-run the evaluation on this data:", icon=":material/error:")
        st.code(app_data.evaluate_command(model, paths()), language="bash")
        return 0
    available = np.zeros(len(labels), dtype=bool)
    available[images.indices] = True
    idx = analysis.pair_indices(labels, ev["preds"], ev["probs"], true, pred, descending=descending)
    total = len(idx)
    idx = idx[available[idx]]
    if other_right is not None:
        idx = analysis.filter_by_other(idx, labels, evaluation(other_model(model))["preds"], other_right)
    support = int((labels == true).sum())
    verb = "correctly as" if true == pred else "as"
    text = (f"{TITLES[model]} classifies **{total}** of the {support} *{SHORT_CLASSES[true]}* test images {verb} "
            f"*{SHORT_CLASSES[pred]}* ({total / support:.1%})." if support else "No test images of this class.")
    if not images.full and len(idx) < total and other_right is None:
        text += f" The demo bundle holds {len(idx)} of them."
    if other_right is not None:
        text += (f" **{len(idx)}** of them are classified {'correctly' if other_right else 'wrongly'} by "
                 f"{TITLES[other_model(model)]}.")
    st.markdown(text)
    gallery(idx, model, key, per_page or PER_PAGE)
    return len(idx)


# ------------------------------------------------------------------------------ explain pages


@st.cache_data(show_spinner="Tracing the model's layers…", max_entries=4)
def _layers(model_key: tuple, _net) -> list[tuple[str, str]]:
    from cifar import explain

    modules = dict(_net.named_modules())
    return [(n, explain.layer_label(n, modules[n], s)) for n, s in explain.layer_shapes(_net).items()]


def layer_options(model: str) -> dict[str, str]:
    """Layer name → picker label, in forward order: every conv, BN, ReLU, pool and ResNet block."""
    return dict(_layers(model_cache_key(model), load_model(model)))


@st.cache_data(show_spinner=False, max_entries=64)
def _feature_maps(model_key: tuple, image: np.ndarray, layer: str, top: int | None, _net):
    from cifar import explain

    maps = explain.feature_maps(_net, explain.to_input(image), layer, top)
    app_data.release_memory()
    return maps


def feature_maps(model: str, image: np.ndarray, layer: str, top: int | None = None):
    """explain.FeatureMaps of one layer for one uint8 32×32×3 image, strongest channel first."""
    return _feature_maps(model_cache_key(model), image, layer, top, load_model(model))


@st.cache_data(show_spinner=False, max_entries=256)
def _attribution(model_key: tuple, image: np.ndarray, target: int, method: str, params: tuple, _net) -> np.ndarray:
    from cifar import explain

    attr = explain.attribute(_net, explain.to_input(image), target, method, **dict(params))
    app_data.release_memory()  # IG/SmoothGrad/Occlusion batches stay in glibc's heap otherwise (see there)
    return attr


def attribution(model: str, image: np.ndarray, target: int, method: str, params: dict) -> np.ndarray:
    """Signed (32, 32) attribution map (explain.attribute); params only those the method uses."""
    return _attribution(model_cache_key(model), image, int(target), method, tuple(sorted(params.items())), load_model(model))


@st.cache_data(show_spinner=False, max_entries=64)
def _probs(model_key: tuple, image: np.ndarray, _net) -> np.ndarray:
    from cifar import explain

    return explain.predict(_net, explain.to_input(image))[0]


def predict(model: str, image: np.ndarray) -> np.ndarray:
    """Class probabilities (10,) of one uint8 32×32×3 image."""
    return _probs(model_cache_key(model), image, load_model(model))


def explain_image(page: str) -> dict | None:
    """The image the explain pages work on: a test image (by index) or the user's upload.

    Returns {"image": uint8 32×32×3, "label": int | None, "index": int | None, "title": str}, or
    None (with a message shown) when no image is available. The choice lives in
    st.session_state[EXPLAIN_KEY], so both explain pages and the gallery share it.
    """
    try:
        images = test_images()
    except Unavailable as e:
        images = None
        show_problem(e)
    upload = st.session_state.get(UPLOAD_KEY)
    state = st.session_state.setdefault(EXPLAIN_KEY, {"source": "test", "index": int(images.indices[0]) if images else 0})
    sources = (["test image"] if images is not None else []) + (["your upload"] if upload else [])
    if not sources:
        st.info("No image to explain: upload one on *Try your own image*.")
        return None
    src_key, idx_key = f"{page}_source", f"{page}_index"
    # The explain state is the truth: the gallery's Explain buttons and the upload page's buttons write
    # it, and so do these widgets' callbacks. The widget keys can be stale (a key set while its widget
    # was not drawn survives page switches as a plain entry), so they follow the state on every run.
    wanted = "your upload" if state.get("source") == "upload" and upload else "test image"
    st.session_state[src_key] = wanted if wanted in sources else sources[0]
    if "index" in state or idx_key not in st.session_state:
        st.session_state[idx_key] = int(state.get("index", 0))

    def on_source() -> None:
        st.session_state[EXPLAIN_KEY]["source"] = "upload" if st.session_state[src_key] == "your upload" else "test"

    def on_index() -> None:
        st.session_state[EXPLAIN_KEY].update(source="test", index=int(st.session_state[idx_key]))

    c1, c2 = st.columns([1, 2])
    if len(sources) > 1:
        source = c1.radio("Image", sources, key=src_key, horizontal=True, on_change=on_source)
    else:
        source = sources[0]
        c1.caption("Upload your own on *Try your own image* to explain it here.")
    if source == "your upload":
        c2.caption(f"Your upload *{upload['name']}*, as the model sees it (32×32).")
        return {"image": upload["pixels"], "label": None, "index": None, "title": f"your upload {upload['name']}"}
    n_test = 10_000 if not images.full else len(images.indices)
    index = c2.number_input("Test image index", 0, max(n_test - 1, int(images.indices[-1])), key=idx_key, on_change=on_index,
                            help="0…9,999 in the official test set. Or pick one in the Misclassifications gallery.")
    pos = images.position(int(index))
    if pos is None:
        near = int(images.indices[np.argmin(np.abs(images.indices - int(index)))])
        c2.warning(f"Test image #{index} is not in the demo bundle ({len(images.indices):,} of 10,000 images); "
                   f"showing the nearest one it holds, #{near}.")
        index, pos = near, images.position(near)
    c2.page_link(PAGE_FILES["misclassifications"], label="Pick an image from the gallery", icon=":material/photo_library:")
    label = int(images.labels[pos])
    return {"image": images.images[pos].copy(), "label": label, "index": int(index),
            "title": f"test image #{index} (a {SHORT_CLASSES[label]})"}
