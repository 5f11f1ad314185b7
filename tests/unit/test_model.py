import pytest
import torch

from learngene import ConvNet, NetConfig, widen_layer
from learngene.model import PRESETS, grow_classifier


def _trained_like(net: ConvNet) -> ConvNet:
    """Give BatchNorm non-trivial statistics so the test would catch uncopied ones."""
    net.train()
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(16, net.config.in_channels, 16, 16) * 3 + 1)
        for b in net.blocks:
            b.bn.weight.uniform_(0.5, 1.5)
            b.bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize("split", ["equal", "random"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_widening_preserves_the_function(layer, split):
    torch.manual_seed(0)
    net = _trained_like(ConvNet(NetConfig(1, [4, 6, 5], [0, 1], [7], num_classes=3)))
    x = torch.randn(8, 1, 16, 16)
    before = net(x)
    widen_layer(net, layer, net.config.widths[layer] * 2 + 1, torch.Generator().manual_seed(1), split=split)
    after = net.eval()(x)
    assert net.blocks[layer].conv.out_channels == net.config.widths[layer]
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()


def test_widening_copies_batchnorm_statistics_of_every_copy():
    torch.manual_seed(0)
    net = _trained_like(ConvNet(NetConfig(1, [3, 4], [], [], 2)))
    old = net.blocks[0].bn.running_mean.clone()
    widen_layer(net, 0, 9)
    new = net.blocks[0].bn.running_mean
    assert all(any(torch.isclose(v, old).tolist()) for v in new)  # every new channel is some old one's stats


def test_widening_the_last_conv_without_mlp():
    torch.manual_seed(0)
    net = _trained_like(ConvNet(NetConfig(1, [3, 4], [0], [], 5)))
    x = torch.randn(4, 1, 16, 16)
    before = net(x)
    widen_layer(net, 1, 10)
    assert torch.allclose(before, net.eval()(x), atol=1e-4)


def test_grow_classifier_keeps_existing_rows():
    net = ConvNet(NetConfig(1, [4], [], [], 3))
    w = net.classifier.weight.detach().clone()
    grow_classifier(net, 5)
    assert net.classifier.out_features == 5
    assert torch.equal(net.classifier.weight[:3], w)


def test_presets_and_small_inputs():
    for preset in ["tiny", "small", "wide", "paper"]:
        net = ConvNet(NetConfig.preset(preset, in_channels=3, num_classes=4))
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 4)  # pools skip once the map is 1x1
    with pytest.raises(ValueError):
        NetConfig.preset("huge", 1)


def test_every_preset_grows_within_one_layout():
    """Growth widens layers towards `final` and never narrows or moves a pool (collective.py widens in place)."""
    for name, p in PRESETS.items():
        assert len(p["start"]) == len(p["final"]), name
        assert all(0 < s <= f for s, f in zip(p["start"], p["final"])), name
        assert all(0 <= i < len(p["start"]) for i in p["pool_after"]), name
    assert PRESETS["wide"]["final"] == [2 * w for w in PRESETS["small"]["final"]]
    assert PRESETS["wide"]["pool_after"] == PRESETS["small"]["pool_after"]


def test_the_services_preset_names_are_the_librarys():
    from service.settings import PRESET_NAMES, Settings  # spelled out there so settings load without torch

    assert PRESET_NAMES == tuple(sorted(PRESETS))
    assert Settings(preset="wide").preset == "wide"
    with pytest.raises(ValueError, match="preset"):
        Settings(preset="huge")
