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


def predict(model: str, image: np.ndarray, calibrated: bool | None = None) -> np.ndarray:
    """Class probabilities (10,) of one uint8 32×32×3 image: calibrated as the sidebar switch says, or as asked.

    From the same cached forward pass as the OOD check (`ood_check`), so the check costs no second pass.
    """
    from cifar.calibration import softmax

    x, _, _ = _inputs(model, image)
    logits, _ = _logits_features(model_key(model), image, load_model(model), x)
    return calibrate(model, softmax(logits[None])[0].astype(np.float32), calibrated)


# ------------------------------------------------------------------------------ trust: calibration and OOD


def _trust_files(model: str) -> tuple[str, str, tuple]:
    from cifar.checkpoints import run_files

    return _files(lambda p: run_files(p.checkpoints, model).trust)


@st.cache_data(show_spinner=False, max_entries=8)
def _trust(model: str, ckpt: str, data: str, version: tuple) -> dict:
    from cifar_app import trust

    return trust.read_trust(model, _paths(ckpt, data))


def trust_file(model: str) -> dict:
    """What python -m cifar.trust measured for a model (<model>.trust.json). Raises Unavailable."""
    return _trust(model, *_trust_files(model))


def temperature(model: str) -> float | None:
    """The model's fitted temperature, None when its trust file is missing or broken."""
    try:
        return float(trust_file(model)["temperature"])
    except Unavailable:
        return None


def calibrate(model: str, probs: np.ndarray, calibrated: bool | None = None) -> np.ndarray:
    """probs after temperature scaling when calibrated (None: the sidebar switch) and a temperature exists."""
    from cifar.calibration import scale_probs

    from cifar_app import state

    t = temperature(model) if (state.calibrated() if calibrated is None else calibrated) else None
    return probs if t is None else scale_probs(probs, t).astype(np.float32)


def probability_note(model: str, calibrated: bool | None = None) -> str:
    """How the shown probabilities are made: "calibrated (T = 0.649)", "raw softmax", or why not calibrated."""
    from cifar_app import state

    if not (state.calibrated() if calibrated is None else calibrated):
        return "raw softmax"
    t = temperature(model)
    return f"calibrated (T = {t:.4g})" if t is not None else "raw softmax: no fitted temperature"


@st.cache_data(show_spinner=False, max_entries=4)
def _scaled(model: str, ckpt: str, data: str, version: tuple, t: float) -> np.ndarray:
    from cifar.calibration import softmax

    from cifar_app import trust

    ev = _eval(model, ckpt, data, version)
    return softmax(trust.test_logits(ev) / t).astype(np.float32)


def shown_probs(model: str) -> np.ndarray:
    """The test-set probabilities as the sidebar switch says (calibrated or raw). Raises Unavailable."""
    from cifar_app import state

    t = temperature(model) if state.calibrated() else None
    if t is None:
        return evaluation(model)["probs"]
    return _scaled(model, *_files(lambda p: p.evaluation(model)), t)


@st.cache_data(show_spinner="Measuring calibration…", max_entries=4)
def _calibration(model: str, ckpt: str, data: str, version: tuple, t: float) -> dict:
    from cifar_app import trust

    return trust.calibration_view(_eval(model, ckpt, data, version), t)


def calibration_view(model: str) -> dict:
    """trust.calibration_view of the stored test predictions at the shipped temperature. Raises Unavailable."""
    t = float(trust_file(model)["temperature"])
    evaluation(model)  # its Unavailable names the predictions file
    return _calibration(model, *_files(lambda p: p.evaluation(model)), t)


@st.cache_resource(show_spinner=False, max_entries=len(list_models()))
def _stats(model: str, ckpt: str, data: str, version: tuple):
    from cifar_app import trust

    return trust.read_stats(model, _paths(ckpt, data))


def mahalanobis_stats(model: str):
    """The model's Mahalanobis statistics (cifar.ood.MahalanobisStats), shared. Raises Unavailable."""
    from cifar.checkpoints import run_files

    return _stats(model, *_files(lambda p: run_files(p.checkpoints, model).mahalanobis))


@st.cache_data(show_spinner=False, max_entries=64, ttl=IMAGE_TTL_S)
def _logits_features(key: tuple, image: np.ndarray, _net, _x) -> tuple[np.ndarray, np.ndarray]:
    from cifar import ood

    logits, feats = memory.on_torch_thread(ood.logits_and_features, _net, _x)
    return logits[0], feats[0]


def ood_check(model: str, image: np.ndarray) -> dict:
    """Is one uint8 32×32×3 image unlike CIFAR-10 for `model`? trust.verdict plus scores, records and
    the calibrated probabilities. Raises Unavailable (the model, or its trust files)."""
    from cifar_app import trust

    info = trust_file(model)
    stats = mahalanobis_stats(model)
    x, _, _ = _inputs(model, image)
    logits, feats = _logits_features(model_key(model), image, load_model(model), x)
    qs = info["ood"]["quantiles"]
    scores = trust.image_scores(logits, feats, stats, qs)
    thresholds = info["ood"]["thresholds"]
    said = trust.verdict(scores, thresholds, qs)
    return {"scores": scores, "thresholds": thresholds, **said,
            "records": trust.score_records(scores, thresholds, said["percentiles"])}



# ------------------------------------------------------------------------------ training-data attribution


def _train_batches(p: Paths) -> list[Path]:
    from cifar.data import TRAIN_FILES

    return [p.test_batch.parent / f for f in TRAIN_FILES]


@st.cache_data(show_spinner=False, max_entries=8)
def _digest(path: str, version: tuple) -> str:
    from cifar.influence import checkpoint_digest

    return checkpoint_digest(path)  # a sha256 of 18-45 MB: once per file version


@st.cache_resource(show_spinner="Reading the training images…", max_entries=1)
def _train_pixels(data: str, version: tuple) -> np.ndarray:
    from cifar.data import load_cifar10

    pixels = load_cifar10(data).train_images
    pixels.flags.writeable = False
    return pixels


@st.cache_resource(show_spinner="Reading the training images' features…", max_entries=len(list_models()))
def _influence_bank(model: str, ckpt: str, data: str, cache_root: str, version: tuple):
    from cifar_app import influences

    p = _paths(ckpt, data)
    digest = _digest(str(p.checkpoint(model)), store.file_key(p.checkpoint(model)))
    have_pixels = all(f.is_file() for f in _train_batches(p))
    full = influences.load_full(model, digest, have_pixels, Path(cache_root))
    if full is not None:
        bank, test = full
        return bank, test, None  # pixels: _train_pixels, by official index
    return influences.load_demo(model, digest, p)


def influence_bank(model: str):
    """(influences.Bank, influences.TestBank, demo pixels or None when the dataset's are used). Raises
    Unavailable. Shared by all sessions (read-only)."""
    from cifar import influence
    from cifar_app import influences

    metadata(model)  # a missing checkpoint says so first
    p = paths()
    root = influence.cache_root()
    digest = _digest(str(p.checkpoint(model)), store.file_key(p.checkpoint(model)))
    cached = influences.cache_files(model, digest, root)
    version = (store.file_key(p.checkpoint(model)), store.file_key(influences.demo_path(p)),
               *(store.file_key(f) for f in cached), *(store.file_key(f) for f in _train_batches(p)))
    return _influence_bank(model, str(p.checkpoint(model).parent), str(p.data), str(root), version)


def training_image(model: str, position: int) -> np.ndarray:
    """The pixels of one row of influence_bank(model)."""
    bank, _, pixels = influence_bank(model)
    if pixels is not None:
        return pixels[position]
    p = paths()
    return _train_pixels(str(p.data), tuple(store.file_key(f) for f in _train_batches(p)))[bank.indices[position]]


def penultimate(model: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features (D,), raw softmax probabilities (C,)) of one uint8 32×32×3 image, fp32: the
    same cached forward pass as `predict` and `ood_check`."""
    from cifar.calibration import softmax

    x, _, _ = _inputs(model, image)
    logits, feats = _logits_features(model_key(model), image, load_model(model), x)
    return feats, softmax(logits[None])[0].astype(np.float32)


@st.cache_data(show_spinner=False, max_entries=64, ttl=IMAGE_TTL_S)
def _ranked(key: tuple, bank_id: int, image: np.ndarray, target: int, k: int, cosine: bool, _bank, _features, _probs):
    from cifar_app import influences

    return influences.rank(_bank, _features, _probs, target, k, cosine)


def ranked(model: str, image: np.ndarray, target: int, k: int, cosine: bool = True):
    """influences.Ranked: proponents, opponents and nearest training images of one image for `target`."""
    bank, _, _ = influence_bank(model)
    features, probs = penultimate(model, image)
    return _ranked(model_key(model), id(bank), image, int(target), int(k), bool(cosine), bank, features, probs)


def test_nearest(model: str, image: np.ndarray, k: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(test indices, cosine similarities) of the k test images nearest one image in feature space."""
    from cifar_app import influences

    _, test, _ = influence_bank(model)
    features, _ = penultimate(model, image)
    return influences.test_neighbours(test, features, k, exclude)

# ------------------------------------------------------------------------------ robustness


@st.cache_data(show_spinner=False, max_entries=2)
def _robustness(ckpt: str, data: str, version: tuple) -> dict | None:
    from cifar_app import robust_views

    try:
        return robust_views.read_results(Path(ckpt) / robust_views.RESULTS_FILE)
    except robust_views.ResultsError as e:
        raise Unavailable(f"{e}. Restore it with `git checkout -- checkpoints/{robust_views.RESULTS_FILE}` or "
                          "recompute it with `python -m cifar.robustness --data-dir <data>`.") from None


def robustness() -> dict | None:
    """checkpoints/robustness.json (cifar.robustness), None when absent. Raises Unavailable when unreadable."""
    from cifar_app import robust_views

    return _robustness(*_files(lambda p: p.checkpoints / robust_views.RESULTS_FILE))


@st.cache_data(show_spinner=False, max_entries=64, ttl=IMAGE_TTL_S)
def corrupted(image: np.ndarray, name: str, severity: int, index: int) -> np.ndarray:
    """One uint8 image under a corruption; `index` (its test index) seeds it as the sweep does."""
    from cifar import corruptions

    return corruptions.corrupt(image, name, int(severity), seed=0, indices=[int(index)])


@st.cache_data(show_spinner=False, max_entries=32, ttl=IMAGE_TTL_S)
def _adversarial(key: tuple, image: np.ndarray, attack: str, epsilon: float, _net, _norm):
    from cifar import adversarial

    out = memory.on_torch_thread(adversarial.attack_image, _net, image, epsilon, attack, mean=_norm[0], std=_norm[1])
    memory.release_memory()
    return out


def adversarial(model: str, image: np.ndarray, attack: str, epsilon: float):
    """adversarial.Adversarial: the image attacked on `model` away from its clean prediction at ε (pixel units)."""
    norm = store.normalization(metadata(model))
    return _adversarial(model_key(model), image, attack, float(epsilon), load_model(model), norm)


@st.cache_data(show_spinner=False, max_entries=32, ttl=IMAGE_TTL_S)
def _min_flip(key: tuple, image: np.ndarray, attack: str, _net, _norm):
    from cifar import adversarial

    out = memory.on_torch_thread(adversarial.min_flip_for_image, _net, image, attack, mean=_norm[0], std=_norm[1])
    memory.release_memory()
    return out


def min_flip(model: str, image: np.ndarray, attack: str):
    """The smallest-ε adversarial copy (≤ 8/255) of one image on `model`, None when none flips it."""
    norm = store.normalization(metadata(model))
    return _min_flip(model_key(model), image, attack, load_model(model), norm)


@st.cache_data(show_spinner=False, max_entries=64, ttl=IMAGE_TTL_S)
def _pixel_probs(key: tuple, pixels: np.ndarray, _net, _norm) -> np.ndarray:
    from cifar import adversarial, explain

    return memory.on_torch_thread(explain.predict, _net, adversarial.normalize_pixels(pixels, *_norm))[0]


def predict_pixels(model: str, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (10,) of a float (3, H, W) image in [0, 1] (an adversarial one: not rounded to uint8),
    calibrated as the sidebar switch says, like `predict`."""
    norm = store.normalization(metadata(model))
    return calibrate(model, _pixel_probs(model_key(model), pixels, load_model(model), norm))


@st.cache_data(show_spinner=False, max_entries=64, ttl=IMAGE_TTL_S)
def _pixel_attribution(key: tuple, pixels: np.ndarray, target: int, method: str, params: tuple, _net, _norm):
    from cifar import adversarial, explain

    x = adversarial.normalize_pixels(pixels, *_norm)
    attr = memory.on_torch_thread(explain.attribute, _net, x, target, method, mean=_norm[0], std=_norm[1],
                                  **dict(params))
    memory.release_memory()
    return attr


def attribution_pixels(model: str, pixels: np.ndarray, target: int, method: str, params: dict) -> np.ndarray:
    """Signed (H, W) attribution of a float (3, H, W) image in [0, 1] (see `attribution`)."""
    from cifar import explain

    used = explain.method_params(method, **params)
    if any(p.kind == "layer" for p in explain.get_method(method).params) and not used.get("layer"):
        used["layer"] = gradcam_layer(model)
    norm = store.normalization(metadata(model))
    return _pixel_attribution(model_key(model), pixels, int(target), method, tuple(sorted(used.items())),
                              load_model(model), norm)


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
