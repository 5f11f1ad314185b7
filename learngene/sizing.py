"""One learngene, many sizes: an individual built to a parameter budget.

The family is the collective's layout as an individual uses it (`individual_config`: inherited positions at
the collective's width, fresh ones at `fresh_width` of it). A ladder of members, smallest first:
1. width steps: every width × k/32 (k = 1 … 64, rounded, at least 1); k = 32 is today's individual;
2. past 2× width, depth: one more inherited layer repeated per step (the deepest first), at 2× width.
`sized_net` builds the LARGEST member whose parameter count (head included) fits the budget:
- inherited layers narrower than their source are SHRUNK to a consistent subset of channels: the
  out-channels kept at position p are the in-channels kept at p+1, and BN weight, bias and running
  statistics are sliced alike. `shrink="even"` keeps an evenly spread subset (Weight Selection's uniform
  selection); `"importance"` keeps the largest filters (L1 norm × |BN gamma| / BN std);
- inherited layers wider than their source are WIDENED as in Net2Net: new channels copy existing ones
  (filter and BN, statistics included) and the next layer's weights from a channel and its copies are
  split so that they sum to the original (random shares, as `model.widen_layer`, so the copies can
  diverge in training) — the function is preserved exactly in eval mode;
- a REPEATED layer follows the layer it repeats and starts as the identity (Net2Net "deeper": a 3x3 conv
  with a 1 at the centre of its own channel, BN scaled to 1): it preserves the function in eval mode
  (its input is non-negative after ReLU/max-pool); in training mode BN renormalises, so not there;
- fresh layers are sized by the same multiplier and freshly initialised;
- `refit=True` (with a support set): a shrunk layer that lost input channels is re-fitted by least squares
  so that, on the support images, its kept outputs match what the source layer computed from all its
  inputs (ThiNet / He et al. 2017 channel pruning: the lost channels' contribution is folded into the kept
  ones). Only along the chain of inherited layers from the input, where both activations are known.

    net, derivation = sized_net(lg, num_classes=20, max_parameters=100_000, shrink="even", seed=0)
    derivation["parameters"] <= 100_000; derivation["layers"][0]["derived"]     # "fresh", "shrunk-even", …
    smallest_budget(lg, 20)             # below it: BudgetTooSmall (its .smallest_budget says what works)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import ConvBlock, ConvNet, NetConfig, count_parameters

STEPS = 32  # width steps per 1× width: multipliers k/32 (fine enough that a budget is well used)
MAX_WIDEN = 2.0  # width multiplier at which widening stops and depth starts
SHRINKS = ("importance", "even")
DEFAULT_SHRINK = "importance"  # measured in bench/sizes.py on base-class validation tasks (docs/benchmark-sizes.md)
DEFAULT_REFIT = True  # least-squares refit of shrunk layers: chosen the same way (run S4, docs/benchmark-sizes.md)


class BudgetTooSmall(ValueError):
    """No member of the family fits the budget; `smallest_budget` is the least that works."""

    def __init__(self, max_parameters: int, smallest_budget: int):
        super().__init__(f"max_parameters {max_parameters} is below the smallest model of this family "
                         f"({smallest_budget} parameters)")
        self.max_parameters = max_parameters
        self.smallest_budget = smallest_budget


@dataclass
class Plan:
    """One member of the family: its config and, per net position, where its weights come from."""

    config: NetConfig
    source: list[int]  # per net position: the collective position it stands for
    repeated: list[bool]  # per net position: an identity repeat of the position before it
    inherited: list[int]  # net positions holding learngene weights (repeats included)
    multiplier: float
    rung: int  # index on the ladder (0 = smallest)


def base_config(source: NetConfig, layers: list[int], num_classes: int, fresh_width: float = 0.5,
                head: str = "linear") -> NetConfig:
    """Today's individual: `individual.individual_config` (imported here to keep one definition)."""
    from .individual import individual_config

    return individual_config(source, layers, num_classes, fresh_width, head)


def ladder_size(layers: list[int]) -> int:
    return 2 * STEPS + len(layers)


def plan(source: NetConfig, layers: list[int], num_classes: int, rung: int, fresh_width: float = 0.5,
         head: str = "linear") -> Plan:
    """The family member at `rung` (0 … ladder_size-1): width steps, then repeats of inherited layers."""
    base = base_config(source, layers, num_classes, fresh_width, head)
    steps = min(rung + 1, int(MAX_WIDEN * STEPS))
    repeats = set(sorted(layers, reverse=True)[: max(0, rung + 1 - steps)])  # deepest inherited first
    m = steps / STEPS
    widths, src, rep, inherited, pool_after = [], [], [], [], []
    for p, b in enumerate(base.widths):
        w = max(1, round(b * m))
        for copy in ([False, True] if p in repeats else [False]):
            if p in layers:
                inherited.append(len(widths))
            if p in base.pool_after and not copy:
                pool_after.append(len(widths))  # a repeat comes after the pool of the layer it repeats
            widths.append(w)
            src.append(p)
            rep.append(copy)
    config = NetConfig(base.in_channels, widths, pool_after, list(base.hidden), num_classes, head)
    return Plan(config, src, rep, inherited, m, rung)


def parameters_of(config: NetConfig) -> int:
    """`count_parameters(ConvNet(config))` by arithmetic (no net is built)."""
    total, c_in = 0, config.in_channels
    for w in config.widths:
        total += c_in * w * 9 + 2 * w  # conv (no bias) + BN weight and bias
        c_in = w
    for h in config.hidden:
        total += c_in * h + h
        c_in = h
    n = max(config.num_classes, 1)
    return total + c_in * n + (0 if config.head == "cosine" else n)


def parameters_at(source: NetConfig, layers: list[int], num_classes: int, rung: int, fresh_width: float = 0.5,
                  head: str = "linear") -> int:
    return parameters_of(plan(source, layers, num_classes, rung, fresh_width, head).config)


def smallest_budget(source: NetConfig, layers: list[int], num_classes: int, fresh_width: float = 0.5,
                    head: str = "linear") -> int:
    return parameters_at(source, layers, num_classes, 0, fresh_width, head)


def fitting_plan(source: NetConfig, layers: list[int], num_classes: int, max_parameters: int,
                 fresh_width: float = 0.5, head: str = "linear") -> Plan:
    """The largest member with at most `max_parameters` parameters; BudgetTooSmall when none fits."""
    best = None
    for rung in range(ladder_size(layers)):  # parameters grow along the ladder
        candidate = plan(source, layers, num_classes, rung, fresh_width, head)
        if parameters_of(candidate.config) > max_parameters:
            break
        best = candidate
    if best is None:
        raise BudgetTooSmall(max_parameters, smallest_budget(source, layers, num_classes, fresh_width, head))
    return best


LADDER = (0.25, 0.5, 1.0, 1.5, 2.0)  # budgets as multiples of today's individual: the bench's five sizes


def default_parameters(source: NetConfig, layers: list[int], num_classes: int, fresh_width: float = 0.5) -> int:
    """Parameters of today's individual (no budget)."""
    return parameters_of(base_config(source, layers, num_classes, fresh_width))


def storage_view(source: NetConfig, layers: list[int], learngene_parameters: int, num_classes: int = 20,
                 ladder: tuple[float, ...] = LADDER) -> dict:
    """What serving every size of `ladder` costs in storage: the learngene alone (every size is built from it)
    against one pretrained model per size (the largest member of the family within each budget)."""
    default = default_parameters(source, layers, num_classes)
    sizes = []
    for factor in ladder:
        budget = int(default * factor)
        sizes.append({"factor": factor, "max_parameters": budget,
                      "parameters": parameters_of(fitting_plan(source, layers, num_classes, budget).config)})
    per_size = sum(s["parameters"] for s in sizes)
    return {"learngene_parameters": int(learngene_parameters), "one_model_per_size_parameters": per_size,
            "ratio": per_size / max(1, learngene_parameters), "num_classes": num_classes,
            "ladder": f"{len(ladder)} budgets, {', '.join(f'{f:g}' for f in ladder)} x today's individual "
                      f"({default:,} parameters at {num_classes} classes)", "sizes": sizes}


# --------------------------------------------------------------------------------------------- weights
def _keep(scores: torch.Tensor, width: int, shrink: str) -> torch.Tensor:
    """Indices of `width` of len(scores) channels, ascending: evenly spread, or the highest scores."""
    n = len(scores)
    if shrink == "even":
        return torch.div(torch.arange(width) * n, width, rounding_mode="floor")
    return torch.sort(torch.topk(scores, width).indices).values


def channel_map(scores: torch.Tensor, width: int, shrink: str, gen: torch.Generator) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """(new channel → source channel, share of the source's outgoing weight each new channel carries)."""
    n = len(scores)
    if width <= n:
        idx = _keep(scores, width, shrink) if width < n else torch.arange(n)
        return idx, torch.ones(width)
    mapping = torch.cat([torch.arange(n), torch.randint(0, n, (width - n,), generator=gen)])
    raw = torch.rand(width, generator=gen) + 0.5
    total = torch.zeros(n).index_add_(0, mapping, raw)
    return mapping, raw / total[mapping]


def filter_importance(t: dict[str, torch.Tensor], p: int) -> torch.Tensor:
    """Per out-channel of source layer p: filter L1 norm × |gamma| / sqrt(running var + eps)."""
    w = t[f"blocks.{p}.conv.weight"]
    scale = t[f"blocks.{p}.bn.weight"].abs() / (t[f"blocks.{p}.bn.running_var"] + 1e-5).sqrt()
    return w.abs().sum(dim=(1, 2, 3)) * scale


def _how(width: int, source_width: int, shrink: str) -> str:
    if width < source_width:
        return f"shrunk-{shrink}"
    return "widened" if width > source_width else "inherited"


@torch.no_grad()
def fill(net: ConvNet, p: Plan, source: NetConfig, tensors: dict[str, torch.Tensor], filled: list[int],
         shrink: str, seed: int = 0) -> list[dict]:
    """Copy source layers into `net` at the net positions `filled` (shrunk/widened/identity repeats);
    returns the per-layer derivation. Positions not filled keep their fresh init."""
    if shrink not in SHRINKS:
        raise ValueError(f"shrink must be one of {SHRINKS}, got {shrink!r}")
    gen = torch.Generator().manual_seed(seed + 29)
    out_map: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # net position → (map, share) of its outputs
    derivation = []
    for i, block in enumerate(net.blocks):
        s, width = p.source[i], p.config.widths[i]
        row = {"position": i, "source_position": s, "width": width, "source_width": source.widths[s]}
        if i not in filled:
            derivation.append({**row, "derived": "fresh"})
            continue
        if p.repeated[i]:  # identity: a 1 at the centre of its own channel; BN passes x through in eval mode
            block.conv.weight.zero_()
            block.conv.weight[torch.arange(width), torch.arange(width), 1, 1] = 1.0
            block.bn.running_mean.zero_(); block.bn.running_var.fill_(1.0); block.bn.bias.zero_()
            block.bn.weight.fill_((1.0 + block.bn.eps) ** 0.5)
            out_map[i] = out_map[i - 1]
            derivation.append({**row, "derived": "repeated", "channels": out_map[i][0].tolist()})
            continue
        w = tensors[f"blocks.{s}.conv.weight"]
        o_idx, o_share = channel_map(filter_importance(tensors, s), width, shrink, gen)
        if i - 1 in out_map:  # fed by a filled layer: its channels, its shares
            i_idx, i_share = out_map[i - 1]
        else:  # fed by the input or by a fresh layer: choose in-channels from this layer's own weights
            i_idx, i_share = channel_map(w.abs().sum(dim=(0, 2, 3)), block.conv.in_channels, shrink, gen)
        block.conv.weight.copy_(w[o_idx][:, i_idx] * i_share.view(1, -1, 1, 1))
        if block.conv.in_channels < w.shape[1]:  # lost inputs: its recorded BN statistics no longer hold
            row["statistics"] = "re-estimated"
        for k in ("weight", "bias", "running_mean", "running_var"):
            getattr(block.bn, k).copy_(tensors[f"blocks.{s}.bn.{k}"][o_idx])
        out_map[i] = (o_idx, o_share)
        derivation.append({**row, "derived": _how(width, source.widths[s], shrink), "channels": o_idx.tolist()})
    return derivation


def sized_net(learngene, num_classes: int, max_parameters: int, *, init: str = "learngene",
              shrink: str = DEFAULT_SHRINK, seed: int = 0, fresh_width: float = 0.5, head: str = "linear",
              weights_from=None, support: torch.Tensor | None = None, refit: bool = DEFAULT_REFIT,
              device: torch.device | None = None) -> tuple[ConvNet, dict]:
    """The largest member of `learngene`'s family within `max_parameters`, and its derivation.

    `init="learngene"` fills the learngene's positions; `"scratch"` the same architecture, nothing inherited;
    `weights_from` (a `Learngene.whole(collective)`) fills EVERY position of that architecture from the whole
    collective trunk instead (the Weight Selection baseline: every layer shrunk or widened). A layer that lost
    input channels no longer sees what its BN statistics recorded: with `support` (converted images) they are
    re-estimated on it (as the recipe lets a layer above a fresh one re-estimate its own); with `refit` such a
    layer's weights are first re-fitted on it by least squares (`refit_shrunk`). The derivation
    is also kept on the net as `net.derivation` (train_individual records it in the individual's metrics).
    """
    p = fitting_plan(learngene.source_config, learngene.layers, num_classes, max_parameters, fresh_width, head)
    torch.manual_seed(seed)
    net = ConvNet(p.config)
    donor = weights_from or learngene
    if init == "scratch":
        filled = []
    elif weights_from is not None:
        filled = list(range(len(p.config.widths)))
    else:
        filled = list(p.inherited)
    layers = fill(net, p, donor.source_config, donor.tensors, filled, shrink, seed)

    derivation = {"max_parameters": int(max_parameters), "parameters": count_parameters(net),
                  "smallest_budget": smallest_budget(learngene.source_config, learngene.layers, num_classes,
                                                     fresh_width, head),
                  "multiplier": p.multiplier, "rung": p.rung, "repeats": sum(p.repeated),
                  "shrink": shrink if init != "scratch" else None, "inherited": filled, "layers": layers}
    restat, refitted = [r["position"] for r in layers if r.get("statistics")], []
    if support is not None and restat:
        net = net.to(device or support.device)
        if refit:  # a refitted conv reproduces the source's pre-BN outputs: the source's statistics hold again
            refitted = refit_shrunk(net, p, donor.source_config, donor.tensors, layers, support, seed)
            for i in refitted:
                layers[i]["derived"] += ", refitted"
                layers[i]["statistics"] = "inherited"
                restat.remove(i)
        if restat:
            reestimate_bn(net, support, restat)
    derivation["refit"] = bool(refitted)
    net.derivation = derivation
    return net, derivation


@torch.no_grad()
def reestimate_bn(net: ConvNet, x: torch.Tensor, positions: list[int], batch: int = 256) -> None:
    """BN running statistics of the blocks at `positions` <- their mean and variance on images x (cumulative
    over batches); every other BN keeps its statistics. The net is left in eval mode."""
    net.eval()
    device = next(net.parameters()).device
    bns = [net.blocks[i].bn for i in positions]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    for i in range(0, len(x), batch):
        net.conv_features(x[i : i + batch].to(device))
    for bn, m in zip(bns, momenta):
        bn.momentum = m
        bn.eval()


@torch.no_grad()
def refit_shrunk(net: ConvNet, p: Plan, source: NetConfig, tensors: dict[str, torch.Tensor],
                 layers: list[dict], x: torch.Tensor, seed: int = 0, rows: int = 8192,
                 ridge: float = 1e-3) -> list[int]:
    """Least-squares refit of the shrunk layers that lost input channels; returns their net positions.

    Walks the chain of inherited (not repeated, not widened) layers from the input: for layer i, `rows` random
    3x3 patches of the support images' activations are drawn at the same places from the shrunk net (its
    kept input channels, A: rows × c_in'·9) and from the source (all input channels); the target is the source
    conv's output of the kept channels (B: rows × c_out'). W' = argmin |A W' − B|² + λ|W'|² (λ = `ridge` ×
    mean diagonal of AᵀA) replaces the conv weight. BN is untouched: W' aims at the outputs the source's BN saw,
    so the caller keeps the source's statistics for these layers (the chain is fitted with them in place).
    """
    gen = torch.Generator().manual_seed(seed + 31)
    device = next(net.parameters()).device
    net.eval()
    refitted = []
    chain = 0  # net positions 0 … chain-1 are inherited, in source order, none wider than its source
    while (chain < len(net.blocks) and layers[chain]["derived"] != "fresh" and not p.repeated[chain]
           and p.source[chain] == chain and layers[chain]["width"] <= layers[chain]["source_width"]):
        chain += 1
    sources = _source_blocks(source, tensors, max(0, chain - 1), device)
    for i in range(1, chain):
        if net.blocks[i].conv.in_channels == tensors[f"blocks.{i}.conv.weight"].shape[1]:
            continue  # nothing lost
        w_src = tensors[f"blocks.{i}.conv.weight"].to(device)  # (C_out, C_in, 3, 3)
        kept = torch.as_tensor(layers[i]["channels"], device=device)
        a, b = [], []
        per_batch = max(1, rows // max(1, (len(x) + 63) // 64))
        for start in range(0, len(x), 64):
            xb = x[start:start + 64].to(device)
            xs, xn = xb, xb
            for j in range(i):  # inputs of layer i: the source's (all channels) and the shrunk net's
                xs, xn = sources[j](xs), net.blocks[j](xn)
            n, _, h, w = xn.shape  # (N, C_in', H, W), the same N, H, W as xs
            idx = torch.randint(0, n * h * w, (min(per_batch, n * h * w),), generator=gen).to(device)
            pa, ps = _patches(xn, idx), _patches(xs, idx)  # (R, C_in'·9), (R, C_in·9)
            a.append(pa)
            b.append(ps @ w_src[kept].reshape(len(kept), -1).T)  # (R, C_out')
        a_all, b_all = torch.cat(a), torch.cat(b)
        gram = a_all.T @ a_all
        lam = ridge * gram.diagonal().mean().clamp_min(1e-8)
        solved = torch.linalg.solve(gram + lam * torch.eye(len(gram), device=device), a_all.T @ b_all)
        conv = net.blocks[i].conv
        conv.weight.copy_(solved.T.reshape(conv.weight.shape))
        refitted.append(i)
    return refitted


def _source_blocks(source: NetConfig, tensors: dict[str, torch.Tensor], count: int, device) -> list[ConvBlock]:
    """Blocks 0 … count-1 of the source net, from its tensors, in eval mode."""
    blocks = []
    for j in range(count):
        block = ConvBlock(source.in_width(j), source.widths[j], j in source.pool_after)
        prefix = f"blocks.{j}."
        block.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=False)
        blocks.append(block.to(device).eval())
    return blocks


def _patches(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The 3x3 patches (zero padded) of x (N, C, H, W) at flat positions idx over N·H·W: (len(idx), C·9),
    flattened in a conv weight's (C, 3, 3) order."""
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    ni, rem = idx // (h * w), idx % (h * w)
    hi, wi = rem // w, rem % w
    taps = [xp[ni, :, hi + dh, wi + dw] for dh in range(3) for dw in range(3)]  # each (R, C)
    return torch.stack(taps, dim=-1).reshape(len(idx), c * 9)
