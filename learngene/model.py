"""The network every model here is made of: a VGG-style conv stack, global pooling, an MLP head.

The collective, the individuals and the baselines are all `ConvNet`s with different `NetConfig`s,
so a learngene (a run of conv layers) drops into any net whose neighbouring widths match.

    net = ConvNet(NetConfig.preset("small", in_channels=1, num_classes=10))
    logits = net(torch.randn(8, 1, 32, 32))          # (8, 10)
    widen_layer(net, 2, 96)                           # same function, 96 filters in conv 2
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

# Presets: `start` widths of the collective, the `final` widths growth ends at, 0-based indices of
# convs followed by a 2x2 max-pool, and the hidden sizes of the MLP head.
PRESETS: dict[str, dict] = {
    # The authors' VGG: 13 convs, pools after convs 2,4,7,10,13 (1-based), FC 1024-1024; grows to VGG-16 widths.
    "paper": {
        "start": [64, 64, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256],
        "final": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
        "pool_after": [1, 3, 6, 9, 12],
        "hidden": [1024, 1024],
    },
    # Sized for CPU: 6 convs, half widths at the start, one layer doubled per task.
    "small": {
        "start": [16, 32, 32, 64, 64, 64],
        "final": [32, 64, 64, 128, 128, 128],
        "pool_after": [0, 1, 3, 5],
        "hidden": [256],
    },
    # `small` at twice the width (about 3.4 x its parameters, 3.3 x its CPU time per step): for a GPU, or for
    # users who trade growth time for features (run W1, docs/benchmark.md).
    "wide": {
        "start": [32, 64, 64, 128, 128, 128],
        "final": [64, 128, 128, 256, 256, 256],
        "pool_after": [0, 1, 3, 5],
        "hidden": [256],
    },
    # For tests: tiny and fast.
    "tiny": {
        "start": [4, 8, 8],
        "final": [8, 16, 16],
        "pool_after": [0, 1, 2],
        "hidden": [16],
    },
}


@dataclass
class NetConfig:
    """Shape of a ConvNet: conv widths, where the pools are, MLP hidden sizes, class count."""

    in_channels: int
    widths: list[int]
    pool_after: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)
    num_classes: int = 0
    head: str = "linear"  # or "cosine": scaled cosine similarity to one weight row per class

    @classmethod
    def preset(cls, name: str, in_channels: int, num_classes: int = 0, final: bool = False) -> "NetConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        p = PRESETS[name]
        widths = p["final"] if final else p["start"]
        return cls(in_channels, list(widths), list(p["pool_after"]), list(p["hidden"]), num_classes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        return cls(**{k: (list(v) if isinstance(v, list) else v) for k, v in d.items()})

    def in_width(self, layer: int) -> int:
        return self.in_channels if layer == 0 else self.widths[layer - 1]


class ConvBlock(nn.Module):
    """conv3x3 (no bias: BN follows) → BatchNorm → ReLU → optional 2x2 max-pool."""

    def __init__(self, c_in: int, c_out: int, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        # Pool only while there is something to pool, so small inputs never collapse to 0x0.
        if isinstance(self.pool, nn.MaxPool2d) and min(x.shape[-2:]) >= 2:
            x = self.pool(x)
        return x


class CosineClassifier(nn.Module):
    """logits = scale · cos(features, row of class c): a prototype head that needs no bias or training."""

    def __init__(self, dim: int, num_classes: int, scale: float = 10.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)
        self.scale = float(scale)  # fixed, so the weights file holds the class rows alone

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(x, dim=1) @ nn.functional.normalize(self.weight, dim=1).T


class ConvNet(nn.Module):
    """Conv stack → global average pool → MLP → linear classifier.

    Global pooling makes the net indifferent to input size, so one learngene serves any image size.
    """

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c = config
        self.blocks = nn.ModuleList(
            ConvBlock(c.in_width(i), w, i in c.pool_after) for i, w in enumerate(c.widths)
        )
        dims = [c.widths[-1], *c.hidden]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        head = CosineClassifier if c.head == "cosine" else nn.Linear
        self.classifier = head(dims[-1], max(c.num_classes, 1))

    @property
    def feature_dim(self) -> int:
        return self.classifier.in_features

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → globally pooled conv features (N, widths[-1])."""
        for block in self.blocks:
            x = block(x)  # spatial size halves at each pool
        return x.mean(dim=(2, 3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → penultimate features (N, feature_dim)."""
        h = self.conv_features(x)
        for fc in self.mlp:
            h = torch.relu(fc(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (N, num_classes)

    def conv_layers(self) -> list[nn.Conv2d]:
        return [b.conv for b in self.blocks]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def grow_classifier(net: ConvNet, num_classes: int) -> None:
    """Add output rows for new classes; existing rows (and so class ids) are kept as they are."""
    old = net.classifier
    if num_classes <= old.out_features and net.config.num_classes > 0:
        return
    new = nn.Linear(old.in_features, num_classes).to(old.weight.device)
    with torch.no_grad():
        n_old = net.config.num_classes  # 0 means the placeholder row holds no class yet
        new.weight[:n_old] = old.weight[:n_old]
        new.bias[:n_old] = old.bias[:n_old]
    net.classifier = new
    net.config.num_classes = num_classes


@torch.no_grad()
def widen_layer(net: ConvNet, layer: int, new_width: int, generator: torch.Generator | None = None,
                split: str = "random") -> None:
    """Net2Net "wider": give conv `layer` `new_width` filters without changing the net's function.

    Each new filter copies a random existing one, together with its BatchNorm weight, bias, running
    mean and running var (the authors' code filled only the last copy's statistics). The next layer's
    incoming weights from a filter and its copies are split so they sum to the original: `split="equal"`
    divides by the copy count as in Net2Net; `"random"` (default) splits unevenly, which is just as exact
    but lets the copies diverge in training (equal splits receive equal gradients for ever).
    """
    block = net.blocks[layer]
    conv, bn = block.conv, block.bn
    old_width = conv.out_channels
    if new_width <= old_width:
        return
    device = conv.weight.device
    extra = torch.randint(0, old_width, (new_width - old_width,), generator=generator).to(device)
    mapping = torch.cat([torch.arange(old_width, device=device), extra])  # new channel → source channel

    new_conv = nn.Conv2d(conv.in_channels, new_width, 3, padding=1, bias=False).to(device)
    new_conv.weight.copy_(conv.weight[mapping])
    new_bn = nn.BatchNorm2d(new_width, eps=bn.eps, momentum=bn.momentum).to(device)
    new_bn.weight.copy_(bn.weight[mapping])
    new_bn.bias.copy_(bn.bias[mapping])
    new_bn.running_mean.copy_(bn.running_mean[mapping])
    new_bn.running_var.copy_(bn.running_var[mapping])
    new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
    block.conv, block.bn = new_conv, new_bn

    # Share of the original outgoing weight each copy carries; shares of one source sum to 1.
    if split == "equal":
        counts = torch.bincount(mapping, minlength=old_width).float()
        share = 1.0 / counts[mapping]
    else:
        raw = torch.rand(new_width, generator=generator).to(device) + 0.5
        total = torch.zeros(old_width, device=device).index_add_(0, mapping, raw)
        share = raw / total[mapping]

    if layer + 1 < len(net.blocks):
        nxt = net.blocks[layer + 1].conv
        w = nxt.weight[:, mapping] * share.view(1, -1, 1, 1)
        new_next = nn.Conv2d(new_width, nxt.out_channels, 3, padding=1, bias=False).to(device)
        new_next.weight.copy_(w)
        net.blocks[layer + 1].conv = new_next
    else:
        # The last conv feeds the MLP (or the classifier) through global average pooling.
        fc = net.mlp[0] if len(net.mlp) else net.classifier
        new_fc = nn.Linear(new_width, fc.out_features).to(device)
        new_fc.weight.copy_(fc.weight[:, mapping] * share.view(1, -1))
        new_fc.bias.copy_(fc.bias)
        if len(net.mlp):
            net.mlp[0] = new_fc
        else:
            net.classifier = new_fc
    net.config.widths[layer] = new_width
