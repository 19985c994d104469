"""The cached loaders every page calls: one Streamlit cache per artifact, all keyed the same way.

Models live in st.cache_resource (one shared object, never copied); metadata, predictions, feature
maps and attributions in st.cache_data. Every key holds the (mtime, size) of the files it reads
(`_files`), so replacing a checkpoint is picked up without restarting the server; what is derived
from loaded weights is keyed by `model_key` instead. Every cache is bounded (max_entries, and a ttl
for per-image results), so many sessions cannot grow the server without limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from cifar.bundle import TestImages
from cifar.models import list_models
from cifar_app import memory, store
from cifar_app.store import Paths, Unavailable

# Per-image results (feature maps, attributions, predictions of uploads) expire after an hour: a
# session that looked at 50 images should not hold their maps forever.
IMAGE_TTL_S = 3600


def paths() -> Paths:
    """Where the app looks now ($CIFAR_CHECKPOINTS, $CIFAR10_DIR)."""
    return store.app_paths()


def _files(*which: Callable[[Paths], Path]) -> tuple[str, str, tuple]:
    """(checkpoint folder, data folder, versions of the files read): the key of every file-backed cache."""
    p = paths()
    return str(p.checkpoints), str(p.data), tuple(store.file_key(f(p)) for f in which)


def _paths(ckpt: str, data: str) -> Paths:
    return Paths(Path(ckpt), Path(data))


# ------------------------------------------------------------------------------ files


@st.cache_data(show_spinner=False, max_entries=8)
def _meta(model: str, ckpt: str, data: str, version: tuple) -> dict:
    return store.read_meta(model, _paths(ckpt, data))


def metadata(model: str) -> dict:
    """Checkpoint metadata (header only). Raises Unavailable."""
    return _meta(model, *_files(lambda p: p.checkpoint(model)))


@st.cache_data(show_spinner="Reading test-set predictions…", max_entries=4)
def _eval(model: str, ckpt: str, data: str, version: tuple) -> dict:
    return store.load_eval(model, _paths(ckpt, data))


def evaluation(model: str) -> dict[str, np.ndarray]:
    """probs, preds, labels for the test set. Raises Unavailable."""
    return _eval(model, *_files(lambda p: p.evaluation(model)))


@st.cache_data(show_spinner="Reading metrics…", max_entries=4)
def _summary(model: str, ckpt: str, data: str, version: tuple) -> dict:
    return store.load_summary(model, _paths(ckpt, data))


def summary(model: str) -> dict:
    """metrics.summarize() of the evaluation. Raises Unavailable."""
    return _summary(model, *_files(lambda p: p.evaluation(model), lambda p: p.metrics(model)))


@st.cache_data(show_spinner=False, max_entries=4)
def _shapes(model: str, ckpt: str, data: str, version: tuple) -> dict:
    return store.tensor_shapes(model, _paths(ckpt, data))


def depth(model: str) -> int | None:
    """Conv + linear layers on the main path, from the checkpoint header."""
    from cifar_app.tables import weight_layers

    try:
        return weight_layers(_shapes(model, *_files(lambda p: p.checkpoint(model))))
    except Exception:  # an unreadable header is reported by metadata() already
        return None


@st.cache_resource(show_spinner="Loading model weights…", max_entries=len(list_models()))
def _model(model: str, ckpt: str, data: str, version: tuple):
    net = memory.on_torch_thread(store.load_checkpoint, model, _paths(ckpt, data))[0]
    memory.freeze_long_lived()  # torch and captum are imported now: take their objects out of gc's way
    return net


def load_model(model: str):
    """The model in eval mode, shared by all sessions (read-only use). Raises Unavailable."""
    return _model(model, *_files(lambda p: p.checkpoint(model)))


@st.cache_resource(show_spinner="Loading test images…", max_entries=1)
def _images(ckpt: str, data: str, version: tuple) -> TestImages:
    images = store.load_test_images(_paths(ckpt, data))
    images.images.flags.writeable = False  # shared across sessions
    return images


def test_images() -> TestImages:
    """TestImages: the full test set or the demo bundle. Raises Unavailable."""
    return _images(*_files(lambda p: p.bundle, lambda p: p.test_batch))


@st.cache_data(show_spinner=False, max_entries=2)
def _tune_rows(ckpt: str, data: str, version: tuple):
    return store.read_tune_rows(_paths(ckpt, data))


def tune_rows() -> list[dict[str, str]] | None:
    """checkpoints/tune_cnn.csv's rows, None when absent. Raises Unavailable when unreadable."""
    return _tune_rows(*_files(lambda p: p.tune_csv))


@st.cache_data(show_spinner=False, max_entries=2)
def _folder_source(test_batch: str, version: tuple) -> dict:
    from cifar.data import describe_source

    return describe_source(test_batch)  # an md5 of 30 MB: once per file version


def data_source(images: bool = False) -> dict | None:
    """{"name", "official", ...} of the CIFAR-10 the numbers come from (as their evaluations recorded
    it), or with images=True of the test images shown (the data folder, when the whole test set is
    read from it); None when not recorded."""
    if images:
        try:
            if test_images().full:
                p = paths()
                return _folder_source(str(p.test_batch), store.file_key(p.test_batch))
        except Unavailable:
            pass
    summaries = []
    for model in list_models():
        try:
            summaries.append(summary(model))
        except Unavailable:
            pass
    return store.recorded_source(summaries)


def classes(model: str | None = None) -> tuple[str, ...]:
    """Class display names from a checkpoint's metadata (the first readable one when model is None)."""
    for m in ([model] if model else list_models()):
        try:
            return store.class_names(metadata(m))
        except Unavailable:
            continue
    return store.class_names(None)


# ------------------------------------------------------------------------------ charts


@st.cache_data(show_spinner=False, max_entries=32)
def _spec(kind: str, key: Any, _make) -> dict:
    return _make().to_dict()


def chart_spec(kind: str, key: Any, make) -> dict:
    """The Vega-Lite dict of an Altair chart built by make(), cached under (kind, key).

    key must identify everything make() reads (file keys, toggles): Altair's build and schema
    validation cost ~0.05 s per chart, which on a 2-core machine is most of a warm page switch.
    Draw it with st.vega_lite_chart(spec=...).
    """
    return _spec(kind, key, make)


# ------------------------------------------------------------------------------ derived from the weights


def model_key(model: str) -> tuple:
    """What identifies the loaded weights in the caches derived from them (feature maps, attributions)."""
    p = paths()
    return model, str(p.checkpoint(model)), store.file_key(p.checkpoint(model))


def _inputs(model: str, image: np.ndarray):
    from cifar import explain

    mean, std = store.normalization(metadata(model))
    return explain.to_input(image, mean, std), mean, std


@st.cache_data(show_spinner="Tracing the model's layers…", max_entries=4)
def _layers(key: tuple, _net) -> list[tuple[str, str]]:
    from cifar import explain

    modules = dict(_net.named_modules())
    shapes = memory.on_torch_thread(explain.layer_shapes, _net)
    return [(n, explain.layer_label(n, modules[n], s)) for n, s in shapes.items()]


def layer_options(model: str) -> dict[str, str]:
    """Layer name → picker label, in forward order: every conv, BN, ReLU, pool and ResNet block."""
    return dict(_layers(model_key(model), load_model(model)))


def gradcam_layer(model: str) -> str:
    """The model's default Grad-CAM layer (the model registry's, else the last 8×8 map)."""
    from cifar import explain

    return memory.on_torch_thread(explain.default_gradcam_layer, load_model(model))


@st.cache_data(show_spinner=False, max_entries=32, ttl=IMAGE_TTL_S)
def _feature_maps(key: tuple, image: np.ndarray, layer: str, top: int | None, _net, _x):
    from cifar import explain

    maps = memory.on_torch_thread(explain.feature_maps, _net, _x, layer, top)
    memory.release_memory()
    return maps


def feature_maps(model: str, image: np.ndarray, layer: str, top: int | None = None):
    """explain.FeatureMaps of one layer for one uint8 32×32×3 image, strongest channel first."""
    x, _, _ = _inputs(model, image)
    return _feature_maps(model_key(model), image, layer, top, load_model(model), x)


@st.cache_data(show_spinner=False, max_entries=128, ttl=IMAGE_TTL_S)
def _attribution(key: tuple, image: np.ndarray, target: int, method: str, params: tuple, _net, _x, _norm,
                 contrast: int | None = None) -> np.ndarray:
    from cifar import explain

    attr = memory.on_torch_thread(explain.attribute, _net, _x, target, method, mean=_norm[0], std=_norm[1],
                                  contrast=contrast, **dict(params))
    memory.release_memory()  # IG/SmoothGrad/Occlusion batches stay in glibc's heap otherwise (see there)
    return attr


def attribution(model: str, image: np.ndarray, target: int, method: str, params: dict,
                contrast: int | None = None) -> np.ndarray:
    """Signed (32, 32) attribution map (explain.attribute); params: only those the method reads; contrast:
    a class B, to explain logit(target) − logit(B) ("why target, not B")."""
    from cifar import explain

    x, mean, std = _inputs(model, image)
    used = explain.method_params(method, **params)
    if any(p.kind == "layer" for p in explain.get_method(method).params) and not used.get("layer"):
        used["layer"] = gradcam_layer(model)  # the default spelled out: one cache entry, whichever view asks
    used = tuple(sorted(used.items()))
    return _attribution(model_key(model), image, int(target), method, used, load_model(model), x, (mean, std),
                        None if contrast is None else int(contrast))


@st.cache_data(show_spinner=False, max_entries=64, ttl=IMAGE_TTL_S)
def _probs(key: tuple, image: np.ndarray, _net, _x) -> np.ndarray:
    from cifar import explain

    return memory.on_torch_thread(explain.predict, _net, _x)[0]


def predict(model: str, image: np.ndarray) -> np.ndarray:
    """Class probabilities (10,) of one uint8 32×32×3 image."""
    x, _, _ = _inputs(model, image)
    return _probs(model_key(model), image, load_model(model), x)



# ------------------------------------------------------------------------------ can I trust it (cifar.scorecard)


@st.cache_data(show_spinner=False, max_entries=2)
def _scorecard(ckpt: str, data: str, version: tuple) -> dict | None:
    from cifar_app import scorecard_views

    return scorecard_views.read_scorecard(_paths(ckpt, data).checkpoints)


def scorecard() -> dict | None:
    """checkpoints/explain_scorecard.json (python -m cifar.scorecard), None when absent. Raises Unavailable."""
    from cifar.scorecard import SCORECARD_FILE

    return _scorecard(*_files(lambda p: p.checkpoints / SCORECARD_FILE))


@st.cache_data(show_spinner=False, max_entries=16, ttl=IMAGE_TTL_S)
def _cascade(key: tuple, image: np.ndarray, target: int, method: str, _net, _x, _norm) -> dict:
    from cifar import scorecard as sc

    run = memory.on_torch_thread(sc.sanity_cascade, _net, _x, [target], [method], mean=_norm[0], std=_norm[1])
    memory.release_memory()
    return {"steps": run["steps"], "maps": run["maps"][method][:, 0],
            "scores": {k: v[:, 0] for k, v in run["scores"][method].items()}}


def sanity_cascade(model: str, image: np.ndarray, target: int, method: str) -> dict:
    """The cascading randomisation of one method on one image: {"steps", "maps" (steps, H, W), "scores"}.

    Runs on a deep copy of the loaded model (cifar.scorecard.cascade): the shared model is not changed."""
    x, mean, std = _inputs(model, image)
    return _cascade(model_key(model), image, int(target), method, load_model(model), x, (mean, std))


@st.cache_data(show_spinner=False, max_entries=32, ttl=IMAGE_TTL_S)
def _faithfulness(key: tuple, image: np.ndarray, target: int, method: str, _net, _x, _norm) -> dict:
    from cifar import scorecard as sc

    def run() -> dict:
        s = sc.Settings()
        maps = sc.maps_for(_net, _x, [target], method, mean=_norm[0], std=_norm[1])
        floor = sc.maps_for(_net, _x, [target], "Random", seed=s.seed)
        both = sc.curves(_net, _x.repeat(2, 1, 1, 1), np.concatenate([maps, floor]), [target, target], steps=s.steps,
                         mean=_norm[0], std=_norm[1])
        out = {"map": maps[0], "steps": s.steps,
               "deletion": both["deletion"][0], "insertion": both["insertion"][0],
               "random_deletion": both["deletion"][1], "random_insertion": both["insertion"][1],
               "infidelity": float(sc.infidelity(_net, _x, maps, [target], n_samples=s.infidelity_samples)[0])}
        out["sensitivity"] = (None if method == "Random" else float(sc.max_sensitivity(
            _net, _x, [target], method, n_samples=s.sensitivity_samples, mean=_norm[0], std=_norm[1])[0]))
        return out

    out = memory.on_torch_thread(run)
    memory.release_memory()
    return out


def faithfulness(model: str, image: np.ndarray, target: int, method: str) -> dict:
    """Deletion/insertion curves of one method and of a random order (the floor), infidelity and
    max-sensitivity, for one image and target, with the scorecard's settings (cifar.scorecard.Settings)."""
    x, mean, std = _inputs(model, image)
    return _faithfulness(model_key(model), image, int(target), method, load_model(model), x, (mean, std))
