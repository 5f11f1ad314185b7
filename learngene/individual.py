"""Individual models: small nets built from a learngene and trained on a few labelled samples.

The individual keeps the source collective's layer layout. Positions the learngene covers get a
fresh copy of the inherited conv and BatchNorm (weights and running statistics); the other positions
are freshly initialised at a fraction of the collective's width (a fresh layer right below an
inherited one takes the width the inherited one expects). Then global pooling and a linear head for
the target classes. With `init="scratch"` the same network is built with nothing inherited.

    ind = train_individual(support, learngene, TrainOptions(epochs=25, seed=0), eval_set=query)
    ind.metrics["eval_accuracy"], ind.predict(images)[0]["label"]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment
from .data import DatasetError, InputSpec, TaskDataset, to_input
from .device import select_device
from .model import ConvNet, NetConfig, count_parameters
from .openworld import calibrate_threshold, unknown_score
from .serialize import pack, prefixed, unpack
from .training import Progress, ShouldStop, accuracy, check_stop, cosine_lr, logits_of

if TYPE_CHECKING:
    from .genes import Learngene

INITS = ("learngene", "scratch")


@dataclass
class TrainOptions:
    """Few-shot training. An epoch is one pass over the support set, repeated (with fresh
    augmentation) until it holds `min_batches_per_epoch` batches, so 1-shot sets still get steps."""

    epochs: int | None = None  # default 25
    seed: int = 0
    init: str = "learngene"  # or "scratch": the same net, nothing inherited
    lr: float | None = None  # AdamW; default 2e-3
    anchor: float = 0.0  # L2 pull of inherited weights towards their inherited values
    batch_size: int = 32
    min_batches_per_epoch: int = 4
    weight_decay: float = 5e-4
    augment: bool = True
    fresh_width: float = 0.5  # width of fresh layers relative to the collective's
    score: str = "max_softmax"  # unknown score for predictions

    def resolved(self) -> "TrainOptions":
        o = TrainOptions(**asdict(self))
        o.epochs = 25 if o.epochs is None else int(o.epochs)
        o.lr = 2e-3 if o.lr is None else float(o.lr)
        if o.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {o.init!r}")
        if o.epochs < 1 or o.epochs > 1000:
            raise ValueError("epochs must be between 1 and 1000")
        return o


def individual_config(source: NetConfig, inherited: list[int], num_classes: int, fresh_width: float) -> NetConfig:
    """Layer widths for an individual: inherited positions at the source width, others narrower."""
    widths = []
    for p, w in enumerate(source.widths):
        feeds_inherited = p + 1 in inherited
        widths.append(w if p in inherited or feeds_inherited else max(8, int(round(w * fresh_width))))
    return NetConfig(source.in_channels, widths, list(source.pool_after), [], num_classes)


def build_net(learngene: "Learngene", num_classes: int, init: str = "learngene", fresh_width: float = 0.5,
              layers: list[int] | None = None, generator_seed: int = 0) -> ConvNet:
    """A fresh individual net; inherited layers hold copies of the learngene's tensors (never shared)."""
    layers = learngene.layers if layers is None else layers
    torch.manual_seed(generator_seed)
    net = ConvNet(individual_config(learngene.source_config, layers, num_classes, fresh_width))
    if init == "learngene":
        state = net.state_dict()
        for p in layers:
            for k, v in prefixed(learngene.tensors, f"blocks.{p}.").items():
                state[f"blocks.{p}.{k}"] = v.clone()
        net.load_state_dict(state)
    return net


def fit(net: ConvNet, x: torch.Tensor, y: torch.Tensor, options: TrainOptions, anchored: list[int] | None = None,
        progress: Progress | None = None, should_stop: ShouldStop | None = None,
        device: torch.device | None = None, held_out: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict]:
    """Train `net` on converted images x (N, C, S, S), labels y (N,); returns the per-epoch history.

    With `held_out` (x, y) each epoch's entry also has its `eval_accuracy` (the training curve users see).
    """
    o = options.resolved()
    device = device or select_device()
    gen = torch.Generator().manual_seed(o.seed)
    net.to(device).train()
    anchors = {}
    if o.anchor > 0 and anchored:
        anchors = {n: p.detach().clone() for n, p in net.named_parameters()
                   if n.startswith(tuple(f"blocks.{i}." for i in anchored))}
    batch = min(o.batch_size, len(x))
    steps = max(o.min_batches_per_epoch, math.ceil(len(x) / batch))
    optim = torch.optim.AdamW(net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    sched = cosine_lr(optim, o.epochs * steps)
    history = []
    for epoch in range(o.epochs):
        total_loss, correct, seen = 0.0, 0, 0
        order = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(math.ceil(steps * batch / len(x)))])
        for s in range(steps):
            check_stop(should_stop)
            idx = order[s * batch : (s + 1) * batch]
            bx, by = x[idx], y[idx]
            if o.augment:
                bx = augment(bx, gen)
            bx, by = bx.to(device), by.to(device)
            logits = net(bx)
            loss = F.cross_entropy(logits, by)
            if anchors:
                params = dict(net.named_parameters())
                loss = loss + o.anchor * sum(((params[n] - a) ** 2).sum() for n, a in anchors.items())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == by).sum())
            seen += len(idx)
        history.append({"epoch": epoch + 1, "loss": total_loss / seen, "accuracy": correct / seen})
        if held_out is not None:
            history[-1]["eval_accuracy"] = accuracy(logits_of(net, held_out[0], device), held_out[1])
        if progress:
            progress({"stage": "train", "epoch": epoch + 1, "epochs": o.epochs, "loss": total_loss / seen,
                      "fraction": (epoch + 1) / o.epochs})
    net.eval()
    return history


def _matching(ds: TaskDataset, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The samples of `ds` whose class is in `class_names` (by name), and their indices there."""
    index = {n: i for i, n in enumerate(class_names)}
    ids = np.array([index.get(ds.class_names[c], -1) for c in ds.y])
    keep = ids >= 0
    if not keep.any():
        raise DatasetError("the evaluation set shares no class name with the individual's classes")
    return keep, ids[keep]


@dataclass
class Individual:
    """A trained few-shot model and what it knows about itself."""

    net: ConvNet
    spec: InputSpec
    class_names: list[str]
    init: str
    layers: list[int]  # positions that were inherited (empty for scratch)
    threshold: float
    score: str = "max_softmax"
    metrics: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return count_parameters(self.net)

    def logits(self, images: np.ndarray) -> torch.Tensor:
        return logits_of(self.net, to_input(images, self.spec), select_device())

    def evaluate(self, ds: TaskDataset) -> float:
        """Accuracy on the samples of `ds` whose class the individual knows (matched by name)."""
        keep, targets = _matching(ds, self.class_names)
        return accuracy(self.logits(ds.x[keep]), torch.from_numpy(targets))

    def predict(self, images: np.ndarray) -> list[dict]:
        """uint8 images (N, H, W[, C]) → one {"label", "probabilities", "unknown"} per image, in order."""
        logits = self.logits(images)
        probs = torch.softmax(logits, 1).numpy()
        unknown = (unknown_score(logits, self.score).numpy() > self.threshold).tolist()
        return [{"label": self.class_names[int(p.argmax())],
                 "probabilities": {n: float(v) for n, v in zip(self.class_names, p)},
                 "unknown": bool(u)} for p, u in zip(probs, unknown)]

    def to_bytes(self) -> bytes:
        meta = {"kind": "individual", "config": self.net.config.to_dict(), "spec": self.spec.to_dict(),
                "class_names": self.class_names, "init": self.init, "layers": self.layers,
                "threshold": self.threshold, "score": self.score, "metrics": self.metrics, "options": self.options}
        return pack(dict(self.net.state_dict()), meta)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Individual":
        tensors, meta = unpack(blob)
        if meta.get("kind") != "individual":
            raise ValueError("not an individual artifact")
        net = ConvNet(NetConfig.from_dict(meta["config"]))
        net.load_state_dict(tensors)
        net.to(select_device()).eval()
        return cls(net, InputSpec(**meta["spec"]), meta["class_names"], meta["init"], meta["layers"],
                   meta["threshold"], meta["score"], meta["metrics"], meta["options"])


def train_individual(support: TaskDataset, learngene: "Learngene", options: TrainOptions | None = None,
                     eval_set: TaskDataset | None = None, progress: Progress | None = None,
                     should_stop: ShouldStop | None = None, layers: list[int] | None = None) -> Individual:
    """Build an individual from `learngene` (or its scratch twin) and train it on `support`.

    `layers` overrides which of the learngene's source layers are inherited (for ablations it must be
    a subset of the layers the learngene carries).
    """
    o = (options or TrainOptions()).resolved()
    support.require(min_classes=2, min_per_class=1)
    spec = learngene.spec
    if support.channels not in (1, 3) or (spec.channels not in (1, 3)):
        raise DatasetError(f"cannot convert {support.channels}-channel images to {spec.channels} channels")
    layers = learngene.layers if layers is None else layers
    inherited = layers if o.init == "learngene" else []
    net = build_net(learngene, support.num_classes, o.init, o.fresh_width, layers, generator_seed=o.seed)
    x, y = to_input(support.x, spec), torch.from_numpy(support.y)
    held_out = None
    if eval_set is not None:
        keep, targets = _matching(eval_set, list(support.class_names))
        held_out = (to_input(eval_set.x[keep], spec), torch.from_numpy(targets))
    history = fit(net, x, y, o, anchored=inherited, progress=progress, should_stop=should_stop, held_out=held_out)
    device = select_device()
    # Unknown threshold: 95% of known-class samples stay below it. The held-out set is the honest sample
    # when there is one: the net has fitted its own support views, so a threshold from them alone flags
    # many ordinary new images as unknown.
    if held_out is not None:
        known, threshold_from = held_out[0], "eval set"
    else:
        gen = torch.Generator().manual_seed(o.seed + 1)
        known = torch.cat([augment(x, gen) for _ in range(max(1, 64 // len(x)))] + [x])
        threshold_from = "augmented support views"
    threshold = calibrate_threshold(unknown_score(logits_of(net, known, device), o.score).numpy())
    ind = Individual(net, spec, list(support.class_names), o.init, list(inherited), threshold, o.score,
                     options=asdict(o))
    ind.metrics = {"train_accuracy": accuracy(logits_of(net, x, device), y), "history": history,
                   "unknown_threshold_from": threshold_from}
    if eval_set is not None:
        ind.metrics["eval_accuracy"] = ind.evaluate(eval_set)
    return ind
