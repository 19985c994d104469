"""Training-data attribution (cifar.influence, cifar.features): our vectorised last-layer TracIn equals
captum's TracInCPFast, a planted duplicate is the top proponent, neighbours and the 2-D map behave, and
the CLI writes the cache and the demo subset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cifar import influence
from cifar.features import capture_penultimate, final_linear, penultimate
from devkit.app_fixture import app_checkpoints_once


@pytest.fixture(scope="session")
def app_checkpoints(tmp_path_factory):
    return app_checkpoints_once(tmp_path_factory)


def tiny_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()


def test_our_tracin_equals_captum_tracincpfast(tmp_path):
    captum_influence = pytest.importorskip("captum.influence")
    gen = torch.Generator().manual_seed(0)
    train_x, train_y = torch.randn(40, 6, generator=gen), torch.randint(0, 4, (40,), generator=gen)
    test_x, test_y = torch.randn(7, 6, generator=gen), torch.randint(0, 4, (7,), generator=gen)
    # Two checkpoints with different learning rates: captum sums lr_k × the last layer's gradient products.
    checkpoints, lrs = [], [0.5, 0.1]
    for k, lr in enumerate(lrs):
        path = tmp_path / f"ckpt{k}.pt"
        torch.save({"state": tiny_net(k).state_dict(), "learning_rate": lr}, path)
        checkpoints.append(str(path))

    def load(model: nn.Module, path: str) -> float:
        # captum's default loader calls torch.load without map_location and wants a bare state dict.
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state"])
        model.eval()
        return saved["learning_rate"]

    model = tiny_net(0)
    tracin = captum_influence.TracInCPFast(
        model, final_linear(model), torch.utils.data.TensorDataset(train_x, train_y), checkpoints,
        checkpoints_load_func=load, loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=16)
    theirs = tracin.influence((test_x, test_y), k=None, show_progress=False).numpy()
    their_self = tracin.self_influence(show_progress=False).numpy()

    tr_a, tr_g, te_a, te_g = [], [], [], []
    for path in checkpoints:
        load(model, path)
        for x, y, feats, grads in ((train_x, train_y, tr_a, tr_g), (test_x, test_y, te_a, te_g)):
            f, logits = penultimate(model, x)
            feats.append(f.numpy())
            grads.append(influence.loss_gradients(torch.softmax(logits, 1).numpy(), y.numpy()))
    ours = influence.tracin_scores(tr_a, tr_g, te_a, te_g, lrs)
    assert ours.shape == (7, 40)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(influence.self_influence(tr_a, tr_g, lrs), their_self, rtol=1e-4, atol=1e-6)
    # Proponents: the same order as captum's top-k.
    idx, _ = tracin.influence((test_x, test_y), k=5, proponents=True, show_progress=False)
    for row in range(7):
        assert list(influence.top_k(ours[row], 5)) == idx[row].tolist()


def test_the_hook_is_removed_even_after_an_error():
    model = tiny_net(0)
    head = final_linear(model)
    assert head is model[4]
    with pytest.raises(RuntimeError):
        with capture_penultimate(model):
            assert len(head._forward_hooks) == 1
            raise RuntimeError("boom")
    assert not head._forward_hooks
    f, logits = penultimate(model, torch.randn(3, 6))
    assert f.shape == (3, 8) and logits.shape == (3, 4) and not head._forward_hooks


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_registered_features_are_what_the_classifier_head_reads(name):
    # One feature vector for TracIn, the embedding map and the Mahalanobis detector: the registry's
    # feature_layer output must be exactly the final linear layer's input (dropout is off in eval).
    from cifar.models import build_model

    torch.manual_seed(0)
    model = build_model(name, dropout=0.3).eval()
    x = torch.randn(3, 3, 32, 32)
    with capture_penultimate(model) as head_inputs:
        logits = model(x)
    features, again = penultimate(model, x)
    assert torch.equal(features, head_inputs[-1].flatten(1))
    assert torch.equal(again, logits)
    assert features.shape == (3, final_linear(model).in_features)


def test_a_planted_duplicate_is_the_top_proponent(cifar_root):
    """A copy of the test image, with its label, among the training images: the strongest proponent
    of the test image's label (cosine-normalised TracIn, what the app ranks by), through the real model
    and its real features. Raw scores need not pass this (see tracin_scores): this untrained CNN's
    largest-norm images outrank the copy."""
    from cifar.data import load_cifar10, normalize, to_tensor
    from cifar.models import build_model

    data = load_cifar10(cifar_root)
    torch.manual_seed(0)
    model = build_model("cnn").eval()
    train_x, test_x = normalize(to_tensor(data.train_images)), normalize(to_tensor(data.test_images))
    te_f, te_logits = penultimate(model, test_x)
    te_probs = torch.softmax(te_logits, 1).numpy()
    for query in (0, 17, 42):
        label = int(data.test_labels[query])
        train = torch.cat([train_x[:150], test_x[query : query + 1], train_x[150:300]])  # the copy at 150
        labels = np.concatenate([data.train_labels[:150], [label], data.train_labels[150:300]])
        f, logits = penultimate(model, train)
        grads = influence.loss_gradients(torch.softmax(logits, 1).numpy(), labels)
        scores = influence.tracin_scores([f.numpy()], [grads], [te_f[query].numpy()],
                                         [influence.loss_gradients(te_probs[query], label)], cosine=True)[0]
        assert influence.top_k(scores, 1)[0] == 150
        assert influence.top_k(scores, 3, largest=False)[0] != 150


def test_nearest_neighbour_of_a_row_is_itself():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(200, 32)).astype(np.float32)
    unit = influence.unit_rows(bank)
    for row in (0, 57, 199):
        idx, sims = influence.nearest(bank[row] * 3.0, unit, k=4)  # cosine: the scale does not matter
        assert idx[0] == row and sims[0] == pytest.approx(1.0, abs=1e-5)
        assert np.all(np.diff(sims) <= 1e-7)


def test_projection_shape_and_determinism():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 12)) + np.linspace(0, 5, 300)[:, None]
    a, b = influence.pca_2d(x, seed=3, max_fit=100), influence.pca_2d(x, seed=3, max_fit=100)
    assert a.shape == (300, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    full = influence.pca_2d(x)
    # The first axis carries the most variance, and matches the SVD's up to the fixed sign.
    assert full[:, 0].var() >= full[:, 1].var()
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(full[:, 0]), np.abs((x - x.mean(0)) @ vt[0]), rtol=1e-4, atol=1e-4)
    assert not np.array_equal(influence.pca_2d(x, seed=3, max_fit=100), influence.pca_2d(x, seed=4, max_fit=100))


def test_top_k_orders_and_breaks_ties_by_position():
    s = np.array([0.1, 0.9, -2.0, 0.9, 0.5])
    assert influence.top_k(s, 3).tolist() == [1, 3, 4]
    assert influence.top_k(s, 2, largest=False).tolist() == [2, 0]
    assert influence.top_k(s, 10).tolist() == [1, 3, 4, 0, 2]


def test_balanced_subset_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 30)
    a = influence.balanced_subset(labels, 7, seed=1)
    assert np.array_equal(a, influence.balanced_subset(labels, 7, seed=1))
    assert np.bincount(labels[a]).tolist() == [7] * 10


def test_cli_writes_the_cache_and_the_demo_subset(app_checkpoints, tmp_path, capsys):
    """python -m cifar.influence on the fixture: cached features per checkpoint, reused on the second run."""
    import shutil

    ckpt = shutil.copytree(app_checkpoints, tmp_path / "checkpoints")
    args = ["--data-dir", str(app_checkpoints.parent / "data"), "--checkpoints", str(ckpt),
            "--cache-dir", str(tmp_path / "cache"), "--per-class", "3", "--top-self", "2"]
    assert influence.main(args) == 0
    out = capsys.readouterr().out
    assert "img/s" in out and "wrote" in out
    demo = influence.load_demo(ckpt / influence.DEMO_FILE)
    assert set(demo.train) == {"cnn", "resnet18"}
    assert demo.balanced.sum() == 30 and len(demo.images) >= 30
    assert np.bincount(demo.train["cnn"].labels[demo.balanced]).tolist() == [3] * 10
    for model, fs in demo.train.items():
        digest = influence.checkpoint_digest(ckpt / f"{model}.safetensors")
        assert demo.digests[model] == digest
        cached = influence.load_features(influence.cache_dir(model, digest, tmp_path / "cache") / "train.npz")
        rows = np.searchsorted(cached.indices, fs.indices) if np.all(np.diff(cached.indices) > 0) else \
            np.array([np.flatnonzero(cached.indices == i)[0] for i in fs.indices])
        np.testing.assert_allclose(fs.features, cached.features[rows], rtol=1e-2, atol=1e-2)  # fp16 in the demo
        assert demo.test_xy[model].shape == (100, 2)
        stored = np.load(influence.cache_dir(model, digest, tmp_path / "cache") / influence.MAP_FILE)
        np.testing.assert_array_equal(stored, demo.test_xy[model])  # the same map with or without the dataset
        info = json.loads((influence.cache_dir(model, digest, tmp_path / "cache") / "info.json").read_text())
        assert info["train"]["images"] == len(cached.indices)
    # The second run reads the cache instead of recomputing.
    assert influence.main(args + ["--no-demo"]) == 0
    assert "cached in" in capsys.readouterr().out


def test_cli_without_data_or_checkpoints_says_what_is_missing(app_checkpoints, tmp_path, capsys):
    assert influence.main(["--data-dir", str(tmp_path / "none"), "--checkpoints", str(tmp_path)]) == 2
    assert "no checkpoints" in capsys.readouterr().err
    assert influence.main(["--data-dir", str(tmp_path / "none"), "--checkpoints", str(app_checkpoints)]) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "--data-dir" in err


def test_the_apps_ranking_equals_the_core_scores():
    """cifar_app.influences.rank (one product for TracIn and neighbours, cosine via norms) agrees with
    cifar.influence's plain formulas."""
    from cifar_app import influences as views

    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(10), size=300).astype(np.float32)
    fs = influence.FeatureSet(np.abs(rng.normal(size=(300, 24))).astype(np.float32), probs,
                              rng.integers(0, 10, 300), np.arange(300) * 3)
    bank = views.make_bank(fs, True, 300, "test")
    a, p = np.abs(rng.normal(size=24)).astype(np.float32), rng.dirichlet(np.ones(10)).astype(np.float32)
    for cosine in (False, True):
        r = views.rank(bank, a, p, 4, k=5, cosine=cosine)
        want = influence.tracin_scores([fs.features], [fs.grads], [a], [influence.loss_gradients(p, 4)], cosine=cosine)[0]
        assert r.proponents.tolist() == influence.top_k(want, 5).tolist()
        assert r.opponents.tolist() == influence.top_k(want, 5, largest=False).tolist()
        np.testing.assert_allclose(r.proponent_scores, want[r.proponents], rtol=1e-4)
    near, _ = influence.nearest(a, influence.unit_rows(fs.features), 5)
    assert r.neighbours.tolist() == near.tolist()
    np.testing.assert_allclose(bank.self_influence, influence.self_influence([fs.features], [fs.grads]))


def test_confident_disagreements_need_both_models_on_the_same_other_class():
    from cifar_app.influences import confident_disagreements

    labels = np.array([0, 1, 2, 3])
    a = np.array([[0.05, 0.95, 0], [0.1, 0.9, 0], [0.0, 0.97, 0.03], [0.02, 0.98, 0]])
    b = np.array([[0.02, 0.98, 0], [0.0, 0.99, 0.01], [0.0, 0.05, 0.95], [0.5, 0.5, 0]])
    a, b = np.pad(a, ((0, 0), (0, 1))), np.pad(b, ((0, 0), (0, 1)))
    idx, agreed, low = confident_disagreements(labels, [a, b], 0.9)
    # 0: both say 1 (label 0); 1: right; 2: they disagree with each other; 3: b is not confident.
    assert idx.tolist() == [0] and agreed.tolist() == [1] and low.tolist() == [0.95]


def test_embedding_scatter_selects_a_point_by_index():
    from cifar_app import charts
    from cifar_app.influences import map_records, selected_point

    xy = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    records = map_records(xy, np.array([0, 0]), probs.argmax(1), probs, ["plane", "car"], np.array([True, False]))
    assert [r["result"] for r in records] == ["correct", "error"] and records[1]["image"] is False
    spec = charts.embedding_scatter(records, ["plane", "car"]).to_dict()
    params = spec["params"]
    assert params[0]["name"] == charts.POINT_SELECTION and params[0]["select"]["fields"] == ["index"]
    assert spec["encoding"]["shape"]["field"] == "result"
    assert selected_point([{"index": 1, "x": 2.0}]) == 1 and selected_point([]) is None
    ringed = charts.embedding_scatter(records, ["plane", "car"], selected=1).to_dict()
    assert len(ringed["layer"]) == 2 and ringed["params"][0]["name"] == charts.POINT_SELECTION  # Altair lifts it up
    assert charts.embedding_scatter(records, ["plane", "car"], selected=99).to_dict().get("layer") is None
