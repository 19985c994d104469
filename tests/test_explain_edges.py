"""cifar.explain's display scaling and input checks, value by value (mutants test_explain.py let live,
scripts/mutation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cifar import explain as E


def test_signed_display_divides_by_the_percentile_of_the_magnitude():
    attr = np.array([[0.1, -0.2], [0.4, -0.05]], dtype=np.float32)  # all below 1: a small map scales up
    np.testing.assert_array_equal(E.to_display(attr, percentile=100), np.float32([[0.25, -0.5], [1.0, -0.125]]))
    np.testing.assert_array_equal(E.to_display(attr, "absolute", percentile=100),
                                  np.float32([[0.25, 0.5], [1.0, 0.125]]))


def test_values_beyond_the_percentile_are_clipped():
    attr = np.array([1.0, 2.0, 3.0, -40.0], dtype=np.float32)
    p50 = 2.5  # the median of |attr|
    np.testing.assert_allclose(E.to_display(attr, percentile=50), [1 / p50, 2 / p50, 1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(E.to_display(attr, "absolute", percentile=50), [1 / p50, 2 / p50, 1.0, 1.0], rtol=1e-6)


def test_non_finite_values_show_as_zero_and_do_not_set_the_scale():
    attr = np.array([np.nan, np.inf, -np.inf, 0.5, -0.25])
    out = E.to_display(attr, percentile=100)
    np.testing.assert_array_equal(out, np.float32([0, 0, 0, 1.0, -0.5]))
    assert out.dtype == np.float32


def test_a_sparse_map_falls_back_to_its_maximum():
    # 99% of |attr| is 0, so the 99th percentile is 0: the single pixel is scaled by the maximum instead.
    attr = np.zeros(400, dtype=np.float32)
    attr[7] = -0.3
    out = E.to_display(attr)
    assert out[7] == -1.0 and not out[np.arange(400) != 7].any()


@pytest.mark.parametrize("attr", [np.zeros((0,)), np.zeros((3, 3)), np.full((2, 2), np.nan)])
def test_empty_zero_and_undefined_maps_stay_zero(attr):
    out = E.to_display(attr)
    assert out.shape == attr.shape and not out.any() and out.dtype == np.float32


def test_an_unknown_display_mode_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"^mode must be 'signed' or 'absolute', got 'log'$"):
        E.to_display(np.ones(3), "log")


@pytest.mark.parametrize("image", [np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 3), np.float32),
                                   np.zeros((32, 32), np.uint8)])
def test_to_input_takes_only_uint8_rgb(image):
    with pytest.raises(ValueError, match=rf"^expected a uint8 \(H, W, 3\) image, got {image.dtype} "
                                         rf"{__import__('re').escape(str(image.shape))}$"):
        E.to_input(image)


def test_grad_cam_on_an_unregistered_model_takes_its_last_map_of_at_least_8x8():
    from torch import nn

    # Maps at a 32px input: 0 conv 32, 1 relu 32, 2 pool 16, 3 conv 16, 4 pool 8, 5 conv 8, 6 pool 2.
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(4), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 10))
    assert E.default_gradcam_layer(net) == "5"


def test_grad_cam_needs_a_map():
    from torch import nn

    with pytest.raises(ValueError, match=r"^Sequential has no 4D layer to run Grad-CAM on$"):
        E.default_gradcam_layer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)))


def test_a_small_map_is_scaled_by_its_percentile_not_its_maximum():
    attr = np.array([0.01, 0.02, 0.03, 0.4], dtype=np.float32)  # the median of |attr| (0.025) is below 1
    np.testing.assert_allclose(E.to_display(attr, percentile=50), [0.4, 0.8, 1.0, 1.0], rtol=1e-6)


def test_feature_layers_follow_the_input_size():
    from cifar.models import build_model

    resnet = build_model("resnet18")
    assert "layer4.1" in E.feature_layers(resnet)  # 4×4 at 32px
    assert "layer4.1" not in E.feature_layers(resnet, input_size=(3, 8, 8))  # 1×1 at 8px: not a map to show


def test_layer_labels_read_as_the_picker_shows_them():
    import torch

    from cifar.models import build_model

    resnet = dict(build_model("resnet18").named_modules())
    expected = {
        "layer2.0": "layer2.0 · BasicBlock 64→128, stride 2",
        "layer1.0": "layer1.0 · BasicBlock 64→64",
        "layer2.0.downsample.0": "layer2.0.downsample.0 · Conv2d 64→128, 1×1, stride 2 (shortcut)",
        "layer2.0.downsample.1": "layer2.0.downsample.1 · BatchNorm2d 128",
        "layer1.0.relu": "layer1.0.relu · ReLU",
    }
    assert {name: E.layer_label(name, resnet[name]) for name in expected} == expected
    # Non-square kernels and strides: each axis in its place.
    assert E.layer_label("c", torch.nn.Conv2d(3, 8, (1, 3), stride=(3, 1))) == "c · Conv2d 3→8, 1×3, stride 3"
    assert E.layer_label("p", torch.nn.MaxPool2d((2, 3)), (4, 5, 6)) == "p · MaxPool2d 2×3 → 4×5×6"


def test_feature_maps_of_one_image_strongest_first_and_only_of_maps():
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 10))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 3.0, 3.0, -2.0]).view(4, 1, 1, 1).expand(4, 3, 1, 1) / 3)
    x = torch.ones(1, 3, 8, 8)
    fm = E.feature_maps(net, x, "0", top=3)
    assert fm.layer == "0" and fm.shape == (4, 8, 8) and fm.order.dtype == np.int64
    assert fm.order.tolist() == [1, 2, 0]  # channels 1 and 2 tie: the lower index first
    np.testing.assert_allclose(fm.strength, [3.0, 3.0, 1.0], rtol=1e-6)
    assert E.feature_maps(net, x, "0", top=0).maps.shape == (0, 8, 8)
    with pytest.raises(ValueError, match=r"^layer '2' outputs shape \(1, 10\), not a \(C, H, W\) map$"):
        E.feature_maps(net, x, "2")
    with pytest.raises(ValueError, match="one image"):
        E.feature_maps(net, x.repeat(2, 1, 1, 1), "0")
