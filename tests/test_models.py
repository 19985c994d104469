"""cifar.models: the report's architectures, parameter for parameter, and the registry's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn

from cifar.models import MODELS, CustomCNN, ModelError, build_model, count_parameters, custom_cnn, resnet18_cifar

# Numbers from the report's model summaries.
CNN_PARAMS = 4_577_290
RESNET18_PARAMS = 11_173_962


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18_cifar().eval()


def test_custom_cnn_parameter_count():
    assert count_parameters(CustomCNN()) == CNN_PARAMS
    assert count_parameters(build_model("cnn", dropout=0.0)) == CNN_PARAMS


def test_custom_cnn_dropout_sits_after_fc1():
    model = custom_cnn(dropout=0.25)
    kinds = [type(m) for m in model.fc1]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout]
    assert model.fc1[2].p == 0.25


def test_custom_cnn_layer_shapes():
    # The report's table of output shapes, read with forward hooks on the named stages.
    expected = {
        "conv1": (64, 32, 32), "pool1": (64, 16, 16),
        "conv2": (128, 16, 16), "pool2": (128, 8, 8),
        "conv3": (256, 8, 8), "pool3": (256, 4, 4),
        "flatten": (4096,), "fc1": (1024,), "fc2": (10,),
    }
    model = CustomCNN().eval()
    seen = {}
    handles = [getattr(model, name).register_forward_hook(
        lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:]))) for name in expected]
    try:
        with torch.no_grad():
            logits = model(torch.randn(2, 3, 32, 32))
    finally:
        for h in handles:
            h.remove()
    assert seen == expected
    assert logits.shape == (2, 10)


def test_resnet18_parameter_count(resnet):
    assert count_parameters(resnet) == RESNET18_PARAMS


def test_resnet18_parts_match_the_report(resnet):
    # A 3×3 stride-1 stem instead of ImageNet's 7×7 (9,408 params), and no maxpool.
    assert count_parameters(resnet.conv1) == 1_728
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert isinstance(resnet.maxpool, nn.Identity)
    assert [count_parameters(b) for b in resnet.layer1] == [73_984, 73_984]
    assert count_parameters(resnet.layer4[1]) == 4_720_640
    # The report's figures for the two downsampling blocks leave out the 1×1 shortcut's BatchNorm
    # (2×128 and 2×512 params), though its total of 11,173,962 counts them; compare like with like.
    shortcut_bn = lambda block: count_parameters(block.downsample[1])  # noqa: E731
    assert count_parameters(resnet.layer2[0]) - shortcut_bn(resnet.layer2[0]) == 229_888
    assert count_parameters(resnet.layer4[0]) - shortcut_bn(resnet.layer4[0]) == 3_672_064
    assert shortcut_bn(resnet.layer2[0]) == 256 and shortcut_bn(resnet.layer4[0]) == 1_024
    assert count_parameters(resnet.fc) == 5_130


def test_resnet18_dropout_head_keeps_the_count():
    model = resnet18_cifar(dropout=0.3)
    assert isinstance(model.fc, nn.Sequential)
    assert [type(m) for m in model.fc] == [nn.Dropout, nn.Linear]
    assert model.fc[0].p == 0.3
    assert count_parameters(model) == RESNET18_PARAMS


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_logits_shape(name, resnet):
    model = resnet if name == "resnet18" else build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_resnet18_keeps_spatial_size_into_layer1(resnet):
    # The point of the CIFAR stem: layer1 sees 32×32, not ImageNet's 8×8.
    seen = {}
    h = resnet.layer1.register_forward_hook(lambda m, i, o: seen.__setitem__("layer1", tuple(o.shape)))
    try:
        with torch.no_grad():
            resnet(torch.randn(1, 3, 32, 32))
    finally:
        h.remove()
    assert seen["layer1"] == (1, 64, 32, 32)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ModelError) as e:
        build_model("nope")
    msg = str(e.value)
    assert "'nope'" in msg
    for name in MODELS:
        assert name in msg


def test_bad_builder_arguments_are_a_model_error():
    with pytest.raises(ModelError, match="cnn"):
        build_model("cnn", depth=50)


def test_pretrained_offline_is_a_clear_model_error(monkeypatch):
    import torchvision.models._api as tv_api

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    # The one place torchvision fetches (or reads cached) weights; patched, nothing touches the network.
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as e:
        resnet18_cifar(pretrained=True)
    msg = str(e.value)
    assert "resnet18" in msg and "URLError" in msg
    assert "pretrained=False" in msg  # the way out


def _torchvision_cifar_resnet18() -> nn.Module:
    """What the report builds: torchvision's resnet18 with the 3×3 stem and no maxpool."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def test_resnet18_is_torchvisions_resnet18_with_the_cifar_stem(resnet):
    tv = _torchvision_cifar_resnet18().eval()
    # Same names and shapes in the same order: torchvision state dicts and optimiser states load as they are.
    assert [(k, v.shape) for k, v in resnet.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]
    # Same computation: torchvision's weights (BN statistics made non-trivial) give the same logits.
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    resnet.load_state_dict(tv.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(resnet(x), tv(x), rtol=1e-5, atol=1e-5)


def test_resnet18_init_follows_torchvision():
    torch.manual_seed(0)
    ours = resnet18_cifar()
    std = ours.layer3[0].conv1.weight.std().item()
    # kaiming_normal_(mode="fan_out") for a 3×3 conv with 256 outputs: std = sqrt(2 / (256·9)).
    # 295k weights: the sample std is within ~0.13% (1 sd) of the true one; measured 0.2% off at seed 0.
    assert std == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.01)
    assert torch.equal(ours.layer2[0].bn1.weight, torch.ones(128)) and not ours.layer2[0].bn1.bias.any()


def test_pretrained_copies_the_body_and_keeps_the_cifar_stem_and_head(monkeypatch):
    import torchvision.models._api as tv_api
    from torchvision.models import resnet18

    imagenet = resnet18(weights=None).state_dict()  # stands in for the downloaded file
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda *a, **k: imagenet)
    model = resnet18_cifar(pretrained=True)
    assert torch.equal(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert model.conv1.weight.shape == (64, 3, 3, 3) and model.fc.out_features == 10



@pytest.mark.parametrize("change", ["drop", "extra"])
def test_pretrained_weights_that_do_not_fit_are_a_model_error(monkeypatch, change):
    import torchvision.models._api as tv_api
    from torchvision.models import resnet18

    imagenet = resnet18(weights=None).state_dict()
    if change == "drop":
        del imagenet["layer3.0.bn1.running_var"]  # strict=False must not let a body tensor go missing
    else:
        imagenet["layer5.0.conv1.weight"] = torch.zeros(1)  # nor take one it has no place for
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda *a, **k: imagenet)
    with pytest.raises(ModelError, match="layer3.0.bn1.running_var" if change == "drop" else "layer5"):
        resnet18_cifar(pretrained=True)

def test_the_app_side_of_the_package_does_not_import_torchvision():
    # torchvision costs the app server ~160 MB; only training-time helpers may import it.
    code = ("import sys, cifar.models, cifar.explain, cifar_app.store, cifar_app.tables, cifar_app.charts, "
            "cifar_app.uploads, cifar_app.pixels, cifar_app.advice; "
            "m = cifar.models.build_model('resnet18'); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
