"""The Robustness page through AppTest: with and without sweep results, corruption and attack probes, links."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cifar_app.nav import PAGE_FILES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 300


@pytest.fixture(scope="module")
def ckpt_with_results(tmp_path_factory, ckpt) -> Path:
    """The app fixture's checkpoints plus a robustness.json the real CLI wrote on its synthetic data."""
    from cifar import robustness

    base = ckpt
    dst = tmp_path_factory.mktemp("rob") / "checkpoints"
    shutil.copytree(base, dst)
    assert robustness.main(["--data-dir", str(base.parent / "data"), "--checkpoints", str(dst), "--per-class", "1",
                            "--adv-per-class", "1", "--corruptions", "fog", "contrast", "--severities", "1", "5",
                            "--epsilons", "8", "--attacks", "fgsm", "--threads", "1",
                            "--work-dir", str(dst.parent / "parts")]) == 0
    assert (dst / "robustness.json").is_file()
    return dst


def _env(monkeypatch, ckpt: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(ckpt))
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data"))  # the demo bundle, no dataset


def open_robustness(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params.clear()
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(PAGE_FILES["robustness"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.subheader, *at.markdown, *at.caption, *at.error, *at.info, *at.code)]
    return "\n".join(map(str, parts))


def test_without_results_the_page_says_how_to_make_them_and_opens_a_link_live(monkeypatch, tmp_path, ckpt):
    _env(monkeypatch, ckpt, tmp_path)
    at = open_robustness(probe="corruption", corruption="frost", severity="9")
    page = texts(at)
    assert "python -m cifar.robustness" in page
    assert at.selectbox(key="rb_corruption").value == "frost"
    assert at.slider(key="rb_severity").value == 3  # 9 is not a severity: the default stays
    assert page.count("Frost, severity 3: **") == 2  # both models' verdicts
    assert len(at.image) >= 8  # clean, corrupted and their maps, per model


def test_with_results_the_summary_shows_both_models(monkeypatch, tmp_path, ckpt_with_results):
    _env(monkeypatch, ckpt_with_results, tmp_path)
    at = open_robustness()
    page = texts(at)
    assert "python -m cifar.robustness" not in page.split("Command:")[0]  # no "compute them" box
    assert "Hendrycks" in page and "74.0%" in page  # the definition and the anchor
    rows = at.dataframe[0].value
    assert list(rows["model"]) == ["CustomCNN", "ResNet18"]
    res = json.loads((ckpt_with_results / "robustness.json").read_text())
    expected = round(100 * res["summary"]["cnn"]["mean_corruption_accuracy"], 1)
    assert rows["mean corruption accuracy %"][0] == pytest.approx(expected)
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    titles = [c.get("title") for c in charts]
    assert titles == ["Accuracy per corruption", "Accuracy against severity", "Accuracy against ε"]


def test_a_link_opens_an_attack_with_its_minimal_epsilon(monkeypatch, tmp_path, ckpt):
    _env(monkeypatch, ckpt, tmp_path)
    at = open_robustness(probe="attack", attack="fgsm", eps="4", method="saliency", image="3")
    assert at.radio(key="rb_attack").value == "fgsm" and at.slider(key="rb_eps").value == 4.0
    assert at.selectbox(key="rb_method").value == "Saliency"
    page = texts(at)
    assert "FGSM, ε = 4/255" in page
    assert "Smallest flipping ε" in page or "No ε up to 8/255" in page
    shared = dict(at.query_params)
    for k, v in {"probe": "attack", "attack": "fgsm", "eps": "4", "method": "saliency", "image": "3"}.items():
        assert shared[k] in (v, [v]), (k, shared.get(k))


def test_a_broken_results_file_is_named_with_its_fix(monkeypatch, tmp_path, ckpt_with_results):
    broken = shutil.copytree(ckpt_with_results, tmp_path / "ck")
    (broken / "robustness.json").write_text("{not json")
    _env(monkeypatch, broken, tmp_path)
    at = open_robustness()
    assert len(at.error) == 1 and "robustness.json" in at.error[0].value
    assert "Gaussian noise, severity 3: **" in texts(at)  # the live part still works
