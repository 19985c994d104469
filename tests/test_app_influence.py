"""The training-data pages through AppTest on the tiny fixture: with the demo subset and no dataset,
with the dataset and its feature cache, and without the subset file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cifar import influence
from devkit.app_fixture import app_checkpoints_once

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cifar_app import state  # noqa: E402
from cifar_app.nav import PAGE_FILES  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 300


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(checkpoints with influence_demo.npz, the synthetic data, the feature cache)."""
    ckpt = app_checkpoints_once(tmp_path_factory)  # devkit.app_fixture builds the subset and its cache
    data, cache = ckpt.parent / "data", ckpt.parent / "cache"
    if not cache.is_dir():  # an APP_FIXTURE_DIR from before the fixture kept its cache
        assert influence.main(["--data-dir", str(data), "--checkpoints", str(ckpt), "--cache-dir", str(cache),
                               "--per-class", "3", "--top-self", "2", "--no-demo"]) == 0
    return ckpt, data, cache


def run(page: str, monkeypatch, ckpt: Path, data: Path, cache: Path, **session) -> AppTest:
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("CIFAR10_DIR", str(data))
    monkeypatch.setenv(influence.CACHE_ENV, str(cache))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    for k, v in session.items():
        at.session_state[k] = v
    at.switch_page(PAGE_FILES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.subheader, *at.markdown, *at.caption, *at.error, *at.info, *at.code)]
    return "\n".join(map(str, parts))


def test_without_the_dataset_the_page_ranks_the_demo_subset_and_says_so(built, tmp_path, monkeypatch):
    ckpt, _, _ = built
    at = run("training_images", monkeypatch, ckpt, tmp_path / "no-data", tmp_path / "no-cache", **{state.IMAGE: 7})
    text = texts(at)
    n = len(influence.load_demo(ckpt / influence.DEMO_FILE).images)
    assert text.count(f"among **{n:,}** of its 64 training images (the demo subset") == 2  # both models
    assert "Proponents of" in text and "Opponents of" in text and "TracIn over 1 checkpoint: the final weights" in text
    captions = [c for img in at.image for c in img.captions]
    assert sum(" · #" in c for c in captions) >= 2 * 16  # at least the 8 nearest training and test images, both models
    assert at.query_params[state.IMAGE] == "7" and at.query_params[state.SCORE] == "cosine"


def test_with_the_dataset_and_its_cache_it_ranks_every_training_image(built, monkeypatch):
    ckpt, data, cache = built
    at = run("training_images", monkeypatch, ckpt, data, cache, **{state.IMAGE: 3, "ti_score": "raw", "ti_k": 4})
    text = texts(at)
    assert text.count("among all **64** training images") == 2
    assert "the feature cache" in text and "raw TracIn" in at.radio(key="ti_score").format_func("raw")


def test_without_the_subset_file_the_page_gives_the_rebuild_command(built, tmp_path, monkeypatch):
    ckpt, _, _ = built
    bare = shutil.copytree(ckpt, tmp_path / "checkpoints")
    (bare / influence.DEMO_FILE).unlink()
    at = run("training_images", monkeypatch, bare, tmp_path / "no-data", tmp_path / "no-cache")
    assert "influence_demo.npz is missing" in texts(at)
    assert "python -m cifar.influence --checkpoints" in "\n".join(c.value for c in at.code)


def test_a_subset_of_another_checkpoint_is_refused(built, tmp_path, monkeypatch):
    ckpt, _, _ = built
    other = shutil.copytree(ckpt, tmp_path / "checkpoints")
    with np.load(other / influence.DEMO_FILE) as z:  # as if the subset had been built from other weights
        arrays = {k: z[k] for k in z.files}
    arrays["cnn.digest"] = np.array("0123456789abcdef")
    np.savez_compressed(other / influence.DEMO_FILE, **arrays)
    at = run("label_errors", monkeypatch, other, tmp_path / "no-data", tmp_path / "no-cache", **{state.MODEL: "cnn"})
    assert "was computed for another cnn checkpoint" in texts(at)


def test_embedding_map_and_label_error_pages(built, tmp_path, monkeypatch):
    ckpt, _, _ = built
    at = run("embedding", monkeypatch, ckpt, tmp_path / "no-data", tmp_path / "no-cache", **{state.IMAGE: 5})
    text = texts(at)
    assert "Test image #5" in text and "Nearest neighbours in feature space" in text
    assert "All 100 test images" in text
    at = run("label_errors", monkeypatch, ckpt, tmp_path / "no-data", tmp_path / "no-cache")
    text = texts(at)
    assert "both models confidently call another class" in text and "highest self-influence" in text
    at.slider(key="le_conf").set_value(0.5).run()
    assert not at.exception and at.query_params[state.CONFIDENCE] == "0.5"


def test_one_click_from_the_gallery_to_the_training_images(built, tmp_path, monkeypatch):
    ckpt, _, _ = built
    at = run("misclassifications", monkeypatch, ckpt, tmp_path / "no-data", tmp_path / "no-cache", **{state.MODEL: "cnn"})
    button = next(b for b in at.button if b.key and b.key.startswith("mis_cnn_t"))
    index = int(button.key.rsplit("_t", 1)[1])
    button.click().run()
    assert not at.exception
    assert at.title[0].value == "Training images behind it"
    assert at.session_state[state.IMAGE] == index and "Proponents of" in texts(at)
    at = run("attributions", monkeypatch, ckpt, tmp_path / "no-data", tmp_path / "no-cache", **{state.IMAGE: index})
    links = [e for e in at.get("page_link") if "training images behind" in e.proto.label]
    assert links and links[0].proto.page == "training-images"  # the page's URL path


def test_an_upload_gets_its_training_images_too(built, tmp_path, monkeypatch):
    ckpt, _, _ = built
    pixels = np.full((32, 32, 3), 200, dtype=np.uint8)
    upload = {"name": "grey.png", "pixels": pixels, "preview": pixels, "size": (32, 32)}
    at = run("training_images", monkeypatch, ckpt, tmp_path / "no-data", tmp_path / "no-cache",
             **{state.UPLOAD_KEY: upload, state.SOURCE: "upload"})
    text = texts(at)
    assert "Your upload *grey.png*" in text and text.count("Proponents of") == 2
    assert "the true class" not in at.radio(key="ti_target").options  # an upload has no label
    assert "(itself left out)" not in text
