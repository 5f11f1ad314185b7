"""Individual models: small nets built from a learngene and trained on a few labelled samples.

The individual keeps the source collective's layer layout. Positions the learngene covers get a
fresh copy of the inherited conv and BatchNorm (weights and running statistics); the other positions
are freshly initialised at a fraction of the collective's width (a fresh layer right below an
inherited one takes the width the inherited one expects). Then global pooling and a linear head.

Inits (`TrainOptions.init`):
- `learngene`: the above, trained on the support. Inherited layers learn at a lower rate; those with
  no fresh layer below them keep their inherited BatchNorm statistics (the support is too small to
  re-estimate them); the head starts from the class prototypes; a small support trains full-batch
  for a step budget set by its size; given the collective's trunk, it also distils the instant model.
- `scratch`: the same net with nothing inherited, same recipe.
- `instant`: no training: the whole collective's conv trunk and a cosine head on class prototypes.
- `probe`: the same frozen trunk with a linear head fitted to the support (a logistic regression, well under
  a second on CPU): what a user would fit on a pretrained backbone by hand.
- `auto` (default): with two or more shots per class, cross-validation over the support (leave one shot per
  class out, up to 3 folds) and the simplest init within 1 paired standard error of the best score (instant,
  then the probe, the learngene individual, scratch: `pick_init`); with one shot, the best of the scores the
  learngene's validation recorded on pseudo tasks at one shot (ties: the learngene individual; the probe has
  no such evidence and is not weighed). Choice, scores and the paired standard errors (margins) go to metrics.

    ind = train_individual(support, learngene, TrainOptions(seed=0), eval_set=query, trunk=whole)
    ind.metrics["eval_accuracy"], ind.metrics["auto"], ind.predict(images)[0]["label"]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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
from .sizing import DEFAULT_REFIT, sized_net, smallest_budget
from .training import Progress, ShouldStop, accuracy, class_means, features_of, linear_probe, logits_of, train

if TYPE_CHECKING:
    from .genes import Learngene

INITS = ("auto", "learngene", "scratch", "instant", "probe")
TRAINED = ("learngene", "scratch")
SIMPLEST_FIRST = ("instant", "probe", "learngene", "scratch")  # by the values each fits to the support (pick_init)
# init="auto" at two or more shots: pick_init's `within_se` (0: the best cross-validated score). Chosen on base
# data (bench/auto_rule.py, docs/benchmark.md): run A1 (within-script glyph and card pseudo tasks) took 2 SE,
# +0.9 points against the best score, +3.0 on grey cards, where three folds of one held-out shot per class (15
# images at 5-way) could not tell a learngene individual 7 points behind instant from one ahead; run A2 added
# glyph scripts the collective never saw, where 2 SE served instant 2.1 points below the learngene individual,
# and 1 SE had the best mean over all six cells and the smallest worst-cell loss against an oracle. Run P2 added
# the probe as a fourth candidate (a tie on the six cells: +0.02 points, no cell worse; its pre-registered rule).
AUTO_WITHIN_SE = 1.0
# The learngene individual learns the instant model's soft answers on its augmented support views beside the
# labels (Hinton et al. 2015): chosen on base-class pseudo tasks (bench/recipe.py, docs/benchmark.md).
DEFAULT_DISTILL = 3.0


@dataclass
class TrainOptions:
    """Few-shot training. With no `epochs`, a support of n images trains for `step_budget(n)` steps,
    full-batch up to `batch_size` images; with `epochs`, for that many passes over the support (so
    `batch_size=128, epochs=200` is 200 full-batch steps for a support of up to 128 images: run R2's variant,
    +3 to +6 points for scratch on base data, left off for cost, docs/benchmark.md)."""

    epochs: int | None = None
    seed: int = 0
    init: str = "auto"  # "learngene", "scratch", "instant" or "auto" (module docstring)
    lr: float | None = None  # AdamW for fresh layers and the head; default 2e-3
    inherited_lr: float = 0.3  # inherited layers learn at lr × this
    freeze_inherited_bn: bool = True  # inherited layers fed by inherited layers keep their BN statistics
    prototype_head: bool = True  # the head starts from the support's class means
    anchor: float = 0.0  # L2 pull of inherited weights towards their inherited values
    batch_size: int = 32  # a support of up to this many images trains full-batch
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    fresh_width: float = 0.5  # width of fresh layers relative to the collective's
    cv_folds: int = 3  # auto: shots held out per class, one per fold
    score: str = "max_softmax"  # unknown score for predictions
    max_parameters: int | None = None  # build to this budget (learngene/sizing.py); None: today's size
    shrink: str = "importance"  # how inherited layers are narrowed under a budget: "importance" or "even"
    refit: bool = DEFAULT_REFIT  # under a budget: least-squares refit of layers that lost inputs (sizing.py)
    distill: float = DEFAULT_DISTILL  # learngene init: weight of distilling the instant model (0: off)
    distill_temperature: float = 2.0

    def resolved(self) -> "TrainOptions":
        o = replace(self)
        o.lr = 2e-3 if o.lr is None else float(o.lr)
        if o.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {o.init!r}")
        if o.epochs is not None and not 1 <= int(o.epochs) <= 1000:
            raise ValueError("epochs must be between 1 and 1000")
        if o.max_parameters is not None and int(o.max_parameters) < 1:
            raise ValueError("max_parameters must be at least 1")
        if int(o.batch_size) < 1:
            raise ValueError("batch_size must be at least 1")
        if not (0 <= float(o.distill) <= 100 and 0.1 <= float(o.distill_temperature) <= 100):
            raise ValueError("distill must be in [0, 100] and distill_temperature in [0.1, 100]")
        return o


def step_budget(n: int) -> int:
    """Training steps for a support of n images: 100 for the few-shot sizes, more for larger sets."""
    return int(min(400, max(100, n // 2)))


def individual_config(source: NetConfig, inherited: list[int], num_classes: int, fresh_width: float,
                      head: str = "linear") -> NetConfig:
    """Layer widths for an individual: inherited positions at the source width, others narrower."""
    widths = []
    for p, w in enumerate(source.widths):
        feeds_inherited = p + 1 in inherited
        widths.append(w if p in inherited or feeds_inherited else max(8, int(round(w * fresh_width))))
    return NetConfig(source.in_channels, widths, list(source.pool_after), [], num_classes, head)


def build_net(source_config: NetConfig, tensors: dict[str, torch.Tensor], num_classes: int, layers: list[int],
              init: str = "learngene", fresh_width: float = 0.5, seed: int = 0, head: str = "linear") -> ConvNet:
    """A fresh individual net; `layers` hold copies of `tensors` ("blocks.{p}.…", never shared)."""
    torch.manual_seed(seed)
    net = ConvNet(individual_config(source_config, layers, num_classes, fresh_width, head))
    if init != "scratch":
        state = net.state_dict()
        for p in layers:
            for k, v in prefixed(tensors, f"blocks.{p}.").items():
                state[f"blocks.{p}.{k}"] = v.clone()
        net.load_state_dict(state)
    return net


@torch.no_grad()
def set_prototype_head(net: ConvNet, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    """Head rows ← class means of the pooled conv features (unit length; scaled for a linear head)."""
    f = features_of(net, x, device)  # (N, D)
    protos = class_means(f, y, net.config.num_classes)
    w = F.normalize(protos, dim=1)
    if net.config.head == "linear":
        w = w * (5.0 / f.norm(dim=1).mean().clamp_min(1e-6))  # logits ≈ 5 × cosine at the start
        net.classifier.bias.zero_()
    net.classifier.weight.copy_(w.to(net.classifier.weight.device))


@torch.no_grad()
def fit_probe_head(net: ConvNet, x: torch.Tensor, y: torch.Tensor, device: torch.device, seed: int = 0) -> None:
    """Linear head ← a logistic regression on the frozen pooled features (`linear_probe`), so the served net is
    the plain trunk and a linear head."""
    weight, bias = linear_probe(features_of(net, x, device), y, net.config.num_classes, seed)
    net.classifier.weight.copy_(weight.to(net.classifier.weight.device))
    net.classifier.bias.copy_(bias.to(net.classifier.bias.device))


def inherited_prefix(layers: list[int]) -> list[int]:
    """Inherited layers with no fresh layer below them: their input is what their statistics saw."""
    out = []
    for p in range(len(layers) + 1):
        if p not in layers:
            break
        out.append(p)
    return out


def fit(net: ConvNet, x: torch.Tensor, y: torch.Tensor, options: TrainOptions, inherited: list[int] | None = None,
        progress: Progress | None = None, should_stop: ShouldStop | None = None, device: torch.device | None = None,
        held_out: tuple[torch.Tensor, torch.Tensor] | None = None, teacher: ConvNet | None = None) -> list[dict]:
    """Train `net` on converted images x (N, C, S, S), labels y (N,); returns the per-epoch history.

    With `held_out` (x, y) each epoch's entry also has its `eval_accuracy` (the training curve users see);
    with a `teacher` (same classes, eval mode) the loss adds `options.distill` × its distillation term.
    """
    o = options.resolved()
    device = device or select_device()
    inherited = inherited or []
    gen = torch.Generator().manual_seed(o.seed)
    net.to(device)
    if o.prototype_head:
        set_prototype_head(net, x, y, device)
    batch = min(o.batch_size, len(x))
    per_pass = math.ceil(len(x) / batch)
    if o.epochs is None:
        steps = step_budget(len(x))
        steps_per_epoch = max(1, steps // 25)  # 25 points on the training curve
    else:
        steps, steps_per_epoch = o.epochs * per_pass, per_pass
    order = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(math.ceil(steps * batch / len(x)))])

    def draw(step: int):
        idx = order[step * batch : (step + 1) * batch]
        bx = augment(x[idx], gen) if o.augment else x[idx]
        return bx, y[idx]

    terms = []
    if o.anchor > 0 and inherited:
        names = tuple(f"blocks.{i}." for i in inherited)
        anchors = {n: p.detach().clone() for n, p in net.named_parameters() if n.startswith(names)}

        def anchor_penalty(logits, bx):  # noqa: ARG001 - the anchor penalty looks only at the weights
            params = dict(net.named_parameters())
            return o.anchor * sum(((params[n] - a) ** 2).sum() for n, a in anchors.items())
        terms.append(anchor_penalty)
    if teacher is not None and o.distill > 0:
        teacher.to(device).eval()
        t = o.distill_temperature

        def distillation(logits, bx):  # KL(teacher ‖ student) on this batch's augmented views, × T² (Hinton)
            with torch.no_grad():
                target = torch.softmax(teacher(bx) / t, 1)
            return o.distill * t * t * F.kl_div(F.log_softmax(logits / t, 1), target, reduction="batchmean")
        terms.append(distillation)
    extra = (lambda logits, bx: sum(term(logits, bx) for term in terms)) if terms else None

    frozen = [net.blocks[p].bn for p in inherited_prefix(inherited)] if o.freeze_inherited_bn else []
    total_epochs = math.ceil(steps / steps_per_epoch)

    def on_epoch(epoch: int, stats: dict) -> None:
        if held_out is not None:
            stats["eval_accuracy"] = accuracy(logits_of(net, held_out[0], device), held_out[1])
        if progress:
            progress({"stage": "train", "epoch": epoch, "epochs": total_epochs, "loss": stats["loss"],
                      "fraction": epoch / total_epochs})

    return train(net, draw, steps=steps, lr=o.lr, weight_decay=o.weight_decay, warmup=min(10, steps // 10),
                 lr_scale={f"blocks.{p}.": o.inherited_lr for p in inherited}, label_smoothing=o.label_smoothing,
                 extra_loss=extra, frozen_bn=frozen, steps_per_epoch=steps_per_epoch, on_epoch=on_epoch,
                 should_stop=should_stop, device=device)


def distils(init: str, o: TrainOptions, has_trunk: bool) -> bool:
    """Whether a model distils the instant model: the learngene individual at its default size, given the trunk.

    Under a `max_parameters` budget it does not: distillation was chosen at the default size (run R1), and at
    budgets it cost up to 9 points at 20-way 5-shot (run S6, docs/benchmark-sizes.md)."""
    return init == "learngene" and o.distill > 0 and has_trunk and o.max_parameters is None


def make_net(init: str, learngene: "Learngene", trunk: "Learngene | None", x: torch.Tensor, y: torch.Tensor,
             num_classes: int, o: TrainOptions, layers: list[int] | None = None, device: torch.device | None = None,
             **fit_kwargs) -> tuple[ConvNet, list[int], list[dict]]:
    """Build the net of one (non-auto) init and train it; returns (net, inherited layers, history)."""
    device = device or select_device()
    if init in ("instant", "probe"):  # the collective's frozen trunk and a head from the support
        if trunk is None:
            raise DatasetError(f"init={init} needs the collective's trunk (no collective version is known)")
        head = "cosine" if init == "instant" else "linear"
        if o.max_parameters is not None:  # the whole trunk shrunk (or widened) to the budget, still no training
            net, size = sized_net(trunk, num_classes, o.max_parameters, shrink=o.shrink, seed=o.seed, head=head,
                                  support=x, refit=o.refit, device=device)
            net, kept = net.to(device), size["inherited"]
        else:
            net = build_net(trunk.source_config, trunk.tensors, num_classes, trunk.layers, "learngene", seed=o.seed,
                            head=head).to(device)
            kept = trunk.layers
        if init == "instant":
            set_prototype_head(net, x, y, device)
        else:
            fit_probe_head(net, x, y, device, seed=o.seed)
        return net.eval(), list(kept), []
    layers = learngene.layers if layers is None else layers
    inherited = list(layers) if init == "learngene" else []
    if o.max_parameters is not None:  # the largest member of the family within the budget (learngene/sizing.py)
        gene = learngene if list(layers) == list(learngene.layers) else replace(learngene, layers=list(layers))
        net, size = sized_net(gene, num_classes, o.max_parameters, init=init, shrink=o.shrink, seed=o.seed,
                              fresh_width=o.fresh_width, support=x, refit=o.refit, device=device)
        inherited = size["inherited"]
    else:
        net = build_net(learngene.source_config, learngene.tensors, num_classes, layers, init, o.fresh_width,
                        o.seed)
    teacher = None
    if distils(init, o, trunk is not None):  # the instant model at full size
        teacher = make_net("instant", learngene, trunk, x, y, num_classes, replace(o, max_parameters=None),
                           device=device)[0]
    history = fit(net, x, y, o, inherited=inherited, device=device, teacher=teacher, **fit_kwargs)
    return net, inherited, history


def cross_validate(learngene: "Learngene", trunk: "Learngene | None", x: torch.Tensor, y: torch.Tensor,
                   num_classes: int, o: TrainOptions, inits: tuple[str, ...], device: torch.device,
                   should_stop: ShouldStop | None = None) -> dict[str, list[float]]:
    """Per held-out image, whether each init got it right, over folds that each hold one shot per class out."""
    shots = int(torch.bincount(y, minlength=num_classes).min())
    gen = torch.Generator().manual_seed(o.seed + 17)
    perms = {c: (y == c).nonzero().flatten()[torch.randperm(int((y == c).sum()), generator=gen)]
             for c in range(num_classes)}
    correct: dict[str, list[float]] = {i: [] for i in inits}
    for fold in range(min(o.cv_folds, shots)):
        q = torch.stack([perms[c][fold] for c in range(num_classes)])
        s = torch.tensor(sorted(set(range(len(y))) - set(q.tolist())))
        for init in inits:
            net, _, _ = make_net(init, learngene, trunk, x[s], y[s], num_classes, o, device=device,
                                 should_stop=should_stop)
            correct[init] += (logits_of(net, x[q], device).argmax(1) == y[q]).float().tolist()
    return correct


def paired_margins(outcomes: dict[str, list[float]], base: str = "learngene") -> dict[str, float]:
    """Standard error of (init − base) over paired outcomes (held-out images, or pseudo tasks)."""
    out = {}
    for init, v in outcomes.items():
        if init != base and len(v) > 1:
            d = np.asarray(v) - np.asarray(outcomes[base])
            out[init] = float(d.std(ddof=1) / math.sqrt(len(d)))
    return out


def pick_init(scores: dict[str, float], outcomes: dict[str, list[float]] | None = None,
              within_se: float = 0.0, preference: tuple[str, ...] = SIMPLEST_FIRST) -> str:
    """The init with the best score (ties: the learngene individual, then instant, the probe, scratch); given per-image
    `outcomes` and `within_se` > 0, the simplest init whose score is within `within_se` paired standard errors of
    the best's (the one-standard-error rule of cross-validation; simplest = fewest values fitted to the support:
    instant, which fits only class means, then the probe's linear head, the learngene individual, scratch).

    A one-SE rule in favour of the learngene individual was tried (run B4 and cards run F3) and kept it where
    instant was 15 points better on RGB cards (5-way 5-shot: 0.711 against 0.760 for the plain best score in run
    F2), with no gain on glyphs; runs A1 and A2 (bench/auto_rule.py) measured it in favour of the simplest init
    instead and chose `within_se` = 1 (`AUTO_WITHIN_SE`). `preference` replaces the simplest-first order
    (bench/auto_rule.py replays other orders)."""
    order = [i for i in ("learngene", "instant", "probe", "scratch") if i in scores]
    best = max(order, key=lambda i: (scores[i], -order.index(i)))
    if outcomes is None or within_se <= 0:
        return best
    for init in (i for i in preference if i in scores):
        if init == best:
            break
        se = paired_margins({init: outcomes[init], best: outcomes[best]}, base=init)[best]
        if scores[best] - scores[init] <= within_se * se:
            return init
    return best


def choose_init(learngene: "Learngene", trunk: "Learngene | None", x: torch.Tensor, y: torch.Tensor,
                num_classes: int, o: TrainOptions, device: torch.device,
                should_stop: ShouldStop | None = None) -> dict:
    """What `init="auto"` picks for this support, and why: {"init", "scores", "margins", "by"}."""
    inits = TRAINED + (("instant",) if trunk is not None else ())
    shots = int(torch.bincount(y, minlength=num_classes).min())
    if shots >= 2:
        # The probe is weighed where run P2 chose it: with held-out shots (no one-shot evidence records it) and at
        # the default size (under a budget its linear head is not what the budget check sized).
        inits += ("probe",) if trunk is not None and o.max_parameters is None else ()
        correct = cross_validate(learngene, trunk, x, y, num_classes, o, inits, device, should_stop)
        scores = {i: float(np.mean(v)) for i, v in correct.items()}
        init = pick_init(scores, correct, AUTO_WITHIN_SE)
        return {"init": init, "scores": scores, "margins": paired_margins(correct), "within_se": AUTO_WITHIN_SE,
                "by": f"cross-validation over the support ({min(o.cv_folds, shots)} folds, one shot per class out)"}
    prior = (learngene.strategies or {}).get("1", {})
    scores = {i: float(prior[i]) for i in inits if i in prior}
    margins = {i: float(m) for i, m in prior.get("paired_se", {}).items() if i in scores}
    by = "the learngene's validation pseudo tasks at one shot"
    if not scores:
        scores, by = {"learngene": 1.0}, "default (no evidence recorded with this learngene)"
    return {"init": pick_init(scores), "scores": scores, "margins": margins, "by": by}


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
                     should_stop: ShouldStop | None = None, layers: list[int] | None = None,
                     trunk: "Learngene | None" = None) -> Individual:
    """Build an individual from `learngene` (its scratch twin, or the instant model on `trunk`, the
    collective's whole conv stack: `Learngene.whole(collective)`) and train it on `support`.

    `layers` overrides which of the learngene's source layers are inherited (for ablations it must be
    a subset of the layers the learngene carries).
    """
    o = (options or TrainOptions()).resolved()
    support.require(min_classes=2, min_per_class=1)
    spec = learngene.spec
    if support.channels not in (1, 3) or (spec.channels not in (1, 3)):
        raise DatasetError(f"cannot convert {support.channels}-channel images to {spec.channels} channels")
    device = select_device()
    x, y = to_input(support.x, spec), torch.from_numpy(support.y)
    n = support.num_classes
    held_out = None
    if eval_set is not None:
        keep, targets = _matching(eval_set, list(support.class_names))
        held_out = (to_input(eval_set.x[keep], spec), torch.from_numpy(targets))
    if trunk is not None and o.max_parameters is not None and o.max_parameters < smallest_budget(
            trunk.source_config, trunk.layers, n, head="cosine"):
        trunk = None  # the instant model cannot fit the budget: auto weighs the other two
    auto = None
    init = o.init
    if init == "auto":
        if progress:
            progress({"stage": "choose", "fraction": 0.0})
        auto = choose_init(learngene, trunk, x, y, n, o, device, should_stop)
        init = auto["init"]
    net, inherited, history = make_net(init, learngene, trunk, x, y, n, o, layers, device, progress=progress,
                                       should_stop=should_stop, held_out=held_out)
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
    ind = Individual(net, spec, list(support.class_names), init, list(inherited), threshold, o.score,
                     options={**asdict(o), "init": o.init})
    ind.metrics = {"train_accuracy": accuracy(logits_of(net, x, device), y), "history": history,
                   "unknown_threshold_from": threshold_from,
                   "distilled": distils(init, o, trunk is not None)}
    if auto is not None:
        ind.metrics["auto"] = auto
    if o.max_parameters is not None:  # size and per-layer derivation (learngene/sizing.py)
        ind.metrics["size"] = net.derivation
    if eval_set is not None:
        ind.metrics["eval_accuracy"] = ind.evaluate(eval_set)
    return ind
