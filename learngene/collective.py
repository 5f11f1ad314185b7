"""The collective model: one network that learns a stream of labelled tasks and grows.

Per task: score the incoming samples for "unknown class" with the current net (open-world report),
hold a share of the new classes back (never trained on: pseudo target tasks for learngene
validation), widen a layer (Net2Net, function preserving) by the growth policy, extend the
class-incremental head (a class keeps its id for ever, by name), train with every batch drawn from the
new samples and the replay memory in proportion to their classes (optionally distilling the previous
net) until held-out accuracy stops improving, record gradient statistics, then measure the accuracy on
every task so far (one row of the accuracy matrix R) and recalibrate the unknown threshold.

    c = Collective.create(InputSpec(channels=1, size=32), preset="small")
    report = c.learn_task(task_dataset, progress=print)   # report["epochs"]: passes it took
    blob = c.to_bytes(); c2 = Collective.from_bytes(blob)
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment
from .data import DatasetError, InputSpec, TaskDataset, to_input
from .device import select_device
from .gradstats import GradientRecorder
from .model import PRESETS, ConvNet, NetConfig, count_parameters, grow_classifier, widen_layer
from .openworld import calibrate_threshold, knn_score, open_world_report, unknown_score
from .serialize import pack, prefixed, unpack
from .training import Progress, ShouldStop, accuracy, features_of, from_uint8, logits_of, to_uint8, train


@dataclass
class CollectiveOptions:
    """How the collective learns. Defaults aim at unseen image sets, not at glyphs."""

    preset: str = "small"
    epochs: int = 20  # passes per task (one cosine schedule); the pass with the best held-out accuracy is kept
    patience: int | None = None  # None: run the whole schedule. N: stop after N passes without a better
    #                              held-out accuracy (faster; on small tasks it stops at a high learning rate
    #                              on a noisy signal and costs features: run R4, docs/benchmark-domains.md)
    batch_size: int = 64
    min_batches_per_epoch: int = 10  # small tasks still get steps: passes repeat (freshly augmented)
    lr: float = 1e-3
    weight_decay: float = 5e-4
    memory_per_class: int = 10  # replay exemplars kept per class (bounded memory)
    heldout_per_class: int = 3  # held out per class: accuracy matrix and threshold calibration
    distill: float = 0.0  # weight of the distillation loss on old-class logits (0 = off: proportional
    #                       replay alone kept forgetting low in the benchmark, see docs/benchmark.md)
    holdback_share: float = 0.1  # of each task's new classes, kept out of training for learngene validation
    holdback_per_class: int = 20  # samples kept per held-back class
    growth: str = "schedule"  # "schedule": one layer per task until final widths; "unknown": only
    #                          when most of a task's new classes are flagged unknown; "none"
    growth_order: str = "bottom-up"  # which layer widens next: "bottom-up" (conv 0 first) or "top-down"
    score: str = "knn"  # unknown score: "knn" (distance to nearest exemplar), "energy" or "max_softmax"
    tau: float = 1e-4  # gradient magnitude threshold of the share statistic
    seed: int = 0


class Collective:
    """A growing network plus everything it must remember between tasks."""

    def __init__(self, net: ConvNet, spec: InputSpec, options: CollectiveOptions):
        self.net, self.spec, self.options = net, spec, options
        self.label_space: list[str] = []
        self.tasks: list[dict] = []  # {"name", "classes"} per task learned
        self.accuracy_matrix: list[list[float]] = []  # R[i][j]: accuracy on task j after task i
        self.recorder = GradientRecorder(options.tau)
        self.threshold = float("inf")
        self.growth_log: list[dict] = []
        c = spec.channels
        empty = torch.zeros(0, c, spec.size, spec.size, dtype=torch.uint8)
        self.memory_x, self.memory_y = empty.clone(), torch.zeros(0, dtype=torch.long)
        self.heldout_x, self.heldout_y = empty.clone(), torch.zeros(0, dtype=torch.long)
        self.heldout_task = torch.zeros(0, dtype=torch.long)
        self.held_back_classes: list[str] = []  # never trained on; holdback_y indexes this list
        self.holdback_x, self.holdback_y = empty.clone(), torch.zeros(0, dtype=torch.long)
        self.device = select_device()
        self.parallel = None  # a distributed.Parallel while this is one rank of data-parallel growth

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, spec: InputSpec, preset: str = "small", seed: int = 0, **options) -> "Collective":
        opts = CollectiveOptions(preset=preset, seed=seed, **options)
        if opts.growth_order not in ("bottom-up", "top-down"):
            raise ValueError(f"growth_order must be 'bottom-up' or 'top-down', got {opts.growth_order!r}")
        torch.manual_seed(seed)
        net = ConvNet(NetConfig.preset(preset, spec.channels))
        return cls(net, spec, opts)

    @property
    def tasks_seen(self) -> int:
        return len(self.tasks)

    @property
    def parameters(self) -> int:
        return count_parameters(self.net)

    def _generator(self, salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.options.seed * 1_000_003 + self.tasks_seen * 7919 + salt)

    # ----------------------------------------------------------------------------- learning
    def learn_task(self, ds: TaskDataset, epochs: int | None = None, progress: Progress | None = None,
                   should_stop: ShouldStop | None = None, name: str | None = None) -> dict:
        """Learn one labelled task; returns the task's report (open world, accuracy, growth).

        `epochs` fixes the number of passes over the task and keeps the last; by default `options.epochs`
        passes run and the one with the best held-out accuracy is kept (or training stops early when
        `options.patience` is set).
        """
        ds.require(min_classes=1, min_per_class=1)
        opts, gen = self.options, self._generator()
        x = to_input(ds.x, self.spec)  # (N, C, S, S) in [-1, 1]
        known = set(self.label_space)
        report: dict = {"classes": list(ds.class_names), "open_world": None}
        if self.tasks_seen > 0:
            report["open_world"] = self._open_world(x, ds, known)

        held_back = self._hold_back(ds, x, known, gen)  # never trained on: honest pseudo target tasks
        learn = [n for n in ds.class_names if n not in self.held_back_classes]
        if not learn:
            raise DatasetError("every class of this task is held back for learngene validation")
        index = {n: i for i, n in enumerate(self.label_space)}
        new_classes = [n for n in learn if n not in index]
        for n in new_classes:
            index[n] = len(self.label_space)
            self.label_space.append(n)
        keep = np.array([ds.class_names[c] in index for c in ds.y])
        sample_ids = np.flatnonzero(keep)
        x = x[torch.from_numpy(sample_ids)]
        y = torch.tensor([index[ds.class_names[c]] for c in ds.y[keep]])  # global class ids
        report.update(new_classes=new_classes, held_back_classes=held_back)
        report["growth"] = self._grow(report["open_world"], new_classes, ds)
        grow_classifier(self.net, len(self.label_space))

        train_idx, held_idx = self._split(y, gen)
        report["heldout_index"] = sample_ids[held_idx.numpy()].tolist()  # into `ds`: for a joint reference
        history = self._train(x[train_idx], y[train_idx], x[held_idx], y[held_idx], known, epochs, gen,
                              progress, should_stop)
        self.recorder.finish_task(reduce=self.parallel.mean if self.parallel else None)

        self._remember(x, y, train_idx, held_idx, gen)
        self.tasks.append({"name": name or f"task-{self.tasks_seen + 1}", "classes": list(ds.class_names),
                           "new_classes": new_classes, "held_back_classes": held_back})
        row = self._accuracy_row()
        self.accuracy_matrix.append(row)
        self._calibrate()
        report.update({"accuracy": row[-1], "accuracy_row": row, "loss": history[-1]["loss"],
                       "epochs": len(history), "history": history,
                       "grad_stats": {s: self.recorder.history[s][-1] for s in self.recorder.history
                                      if self.recorder.history[s]},
                       "widths": list(self.net.config.widths), "parameters": self.parameters})
        return report

    def _train(self, xt: torch.Tensor, yt: torch.Tensor, xh: torch.Tensor, yh: torch.Tensor, known: set[str],
               epochs: int | None, gen: torch.Generator, progress: Progress | None,
               should_stop: ShouldStop | None) -> list[dict]:
        """New samples mixed with replayed exemplars in proportion to their classes, through the one loop.

        Every batch holds old and new classes in the share they have of the label space, so old classes
        keep their weight in the shared head and in the BatchNorm statistics however many tasks came.
        """
        opts = self.options
        mem_x, mem_y = from_uint8(self.memory_x), self.memory_y
        n_old = len(set(mem_y.tolist()) - set(yt.tolist()))
        n_all = n_old + len(set(yt.tolist()))
        replay = min(opts.batch_size - 1, round(opts.batch_size * n_old / n_all)) if len(mem_y) else 0
        fresh = opts.batch_size - replay
        steps_per_epoch = max(opts.min_batches_per_epoch, -(-len(xt) // fresh))
        max_epochs = epochs if epochs is not None else opts.epochs
        order = torch.cat([torch.randperm(len(xt), generator=gen)
                           for _ in range(-(-steps_per_epoch * fresh * max_epochs // len(xt)))])

        def draw(step: int):
            idx = order[step * fresh : (step + 1) * fresh]
            bx, by = xt[idx], yt[idx]
            if replay:
                r = torch.randint(0, len(mem_y), (replay,), generator=gen)
                bx, by = torch.cat([bx, mem_x[r]]), torch.cat([by, mem_y[r]])
            return augment(bx, gen), by

        extra = None
        if opts.distill > 0 and known:
            teacher, n_known = copy.deepcopy(self.net).to(self.device).eval(), len(known)

            def extra(logits, bx):  # noqa: F811 - distillation of the old classes' logits
                with torch.no_grad():
                    old = teacher(bx)[:, :n_known]
                t = 2.0
                return opts.distill * F.kl_div(F.log_softmax(logits[:, :n_known] / t, 1), F.softmax(old / t, 1),
                                               reduction="batchmean") * t * t

        # Held-out samples of every class so far: the convergence signal (and forgetting shows in it).
        check_x = torch.cat([from_uint8(self.heldout_x), xh])
        check_y = torch.cat([self.heldout_y, yh])
        best = {"accuracy": -1.0, "epoch": 0, "state": None}

        def on_epoch(epoch: int, stats: dict) -> bool:
            if len(check_y):
                stats["heldout_accuracy"] = accuracy(logits_of(self.net, check_x, self.device), check_y)
                if self.parallel:  # every rank keeps the same best epoch and stops at the same one
                    stats["heldout_accuracy"] = self.parallel.from_main(stats["heldout_accuracy"])
                if stats["heldout_accuracy"] > best["accuracy"]:
                    best.update(accuracy=stats["heldout_accuracy"], epoch=epoch,
                                state={k: v.detach().clone() for k, v in self.net.state_dict().items()})
            if progress:
                progress({"stage": "train", "epoch": epoch, "epochs": max_epochs, "loss": stats["loss"],
                          "fraction": epoch / max_epochs})
            converged = (epochs is None and opts.patience is not None and epoch >= 2
                         and epoch - best["epoch"] >= opts.patience)
            return bool(converged)

        history = train(self.net, draw, steps=steps_per_epoch * max_epochs, lr=opts.lr,
                        weight_decay=opts.weight_decay, warmup=min(steps_per_epoch, 100), extra_loss=extra,
                        after_backward=lambda: self.recorder.record(self.net.conv_layers()),
                        steps_per_epoch=steps_per_epoch, on_epoch=on_epoch, should_stop=should_stop,
                        device=self.device, parallel=self.parallel)
        if epochs is None and best["state"] is not None:
            self.net.load_state_dict(best["state"])  # the epoch that did best on held-out samples
        return history

    def _hold_back(self, ds: TaskDataset, x: torch.Tensor, known: set[str], gen: torch.Generator) -> list[str]:
        """Keep a share of the task's new classes out of training, with up to `holdback_per_class` samples
        each: pseudo target tasks from classes the collective never learned (learngene validation)."""
        counts = np.bincount(ds.y, minlength=ds.num_classes)
        candidates = [i for i, n in enumerate(ds.class_names)
                      if n not in known and n not in self.held_back_classes and counts[i] >= 3]
        k = int(self.options.holdback_share * len(candidates))
        if k == 0 or len(candidates) - k < 2:
            return []
        pick = sorted(candidates[i] for i in torch.randperm(len(candidates), generator=gen)[:k].tolist())
        for c in pick:
            idx = torch.from_numpy(np.flatnonzero(ds.y == c))
            idx = idx[torch.randperm(len(idx), generator=gen)[: self.options.holdback_per_class]]
            self.holdback_x = torch.cat([self.holdback_x, to_uint8(x[idx])])
            self.holdback_y = torch.cat([self.holdback_y, torch.full((len(idx),), len(self.held_back_classes))])
            self.held_back_classes.append(ds.class_names[c])
        return [ds.class_names[c] for c in pick]

    def _scores(self, x: torch.Tensor, method: str | None = None) -> np.ndarray:
        """Unknown scores of converted images (N, C, S, S) with the current net; higher = more unknown."""
        method = method or self.options.score
        if method == "knn":
            reference = features_of(self.net, from_uint8(self.memory_x), self.device)
            return knn_score(features_of(self.net, x, self.device), reference).numpy()
        return unknown_score(logits_of(self.net, x, self.device), method).numpy()

    def known_reference_scores(self, method: str | None = None) -> np.ndarray:
        """Scores of the held-out samples of known classes (what the threshold is calibrated on)."""
        return self._scores(from_uint8(self.heldout_x), method) if len(self.heldout_y) else np.zeros(0)

    def _open_world(self, x: torch.Tensor, ds: TaskDataset, known: set[str]) -> dict:
        scores = self._scores(x)
        reference = self.known_reference_scores() if len(self.heldout_y) else None
        return open_world_report(scores, ds.y, ds.class_names, known, self.threshold, reference,
                                 self.options.score)

    def _grow(self, open_world: dict | None, new_classes: list[str], ds: TaskDataset) -> dict | None:
        """Widen one layer (in `growth_order`) by the growth policy; returns what was done."""
        final = PRESETS[self.options.preset]["final"]
        widths = self.net.config.widths
        order = range(len(widths)) if self.options.growth_order == "bottom-up" else reversed(range(len(widths)))
        layer = next((i for i in order if widths[i] < final[i]), None)
        if layer is None or self.tasks_seen == 0 or self.options.growth == "none":
            return None
        if self.options.growth == "unknown":
            flagged = [open_world["per_class"].get(n, 0.0) for n in new_classes] if open_world else []
            if not flagged or float(np.mean(flagged)) < 0.5:
                return None
        before = widths[layer]
        widen_layer(self.net, layer, final[layer], self._generator(salt=1))
        event = {"task": self.tasks_seen + 1, "layer": layer, "from": before, "to": final[layer]}
        self.growth_log.append(event)
        return event

    def _split(self, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Hold out up to `heldout_per_class` per class, never more than a fifth of the class."""
        train, held = [], []
        for c in y.unique():
            idx = (y == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            h = min(self.options.heldout_per_class, len(idx) // 5)
            held.append(idx[:h])
            train.append(idx[h:])
        return torch.cat(train), torch.cat(held)

    def _remember(self, x, y, train_idx, held_idx, gen) -> None:
        """Keep `memory_per_class` random training exemplars per new-to-memory class, and the held-out set."""
        keep = []
        already = set(self.memory_y.tolist())
        yt = y[train_idx]
        for c in yt.unique().tolist():
            if c in already:
                continue
            idx = train_idx[(yt == c).nonzero().flatten()]
            keep.append(idx[torch.randperm(len(idx), generator=gen)[: self.options.memory_per_class]])
        if keep:
            k = torch.cat(keep)
            self.memory_x = torch.cat([self.memory_x, to_uint8(x[k])])
            self.memory_y = torch.cat([self.memory_y, y[k]])
        if len(held_idx):
            self.heldout_x = torch.cat([self.heldout_x, to_uint8(x[held_idx])])
            self.heldout_y = torch.cat([self.heldout_y, y[held_idx]])
            self.heldout_task = torch.cat([self.heldout_task, torch.full((len(held_idx),), self.tasks_seen)])

    def _accuracy_row(self) -> list[float]:
        if not len(self.heldout_y):
            return [None] * self.tasks_seen  # tasks too small to hold samples out
        logits = logits_of(self.net, from_uint8(self.heldout_x), self.device)
        row = []
        for j in range(self.tasks_seen):
            m = self.heldout_task == j
            row.append(accuracy(logits[m], self.heldout_y[m]) if m.any() else None)
        return row

    def _calibrate(self) -> None:
        if len(self.heldout_y):
            self.threshold = calibrate_threshold(self.known_reference_scores())

    # ----------------------------------------------------------------------------- reading
    def unknown_scores(self, images: np.ndarray, method: str | None = None) -> np.ndarray:
        """Score raw uint8 images (N, H, W[, C]); above `self.threshold` means unknown."""
        return self._scores(to_input(images, self.spec), method)

    def info(self) -> dict:
        R = self.accuracy_matrix
        last = [v for v in (R[-1] if R else []) if v is not None]
        drops = []
        for j in range(len(R) - 1):  # forgetting: best earlier accuracy on task j minus the last
            earlier = [R[i][j] for i in range(j, len(R) - 1) if R[i][j] is not None]
            if earlier and R[-1][j] is not None:
                drops.append(max(earlier) - R[-1][j])
        forgetting = float(np.mean(drops)) if drops else None
        return {
            "preset": self.options.preset,
            "spec": self.spec.to_dict(),
            "widths": list(self.net.config.widths),
            "parameters": self.parameters,
            "label_space": list(self.label_space),
            "tasks_seen": self.tasks_seen,
            "tasks": self.tasks,
            "accuracy_matrix": R,
            "average_accuracy": float(np.mean(last)) if last else None,
            "forgetting": forgetting,
            "threshold": self.threshold if np.isfinite(self.threshold) else None,
            "score": self.options.score,
            "growth": self.growth_log,
            "held_back_classes": list(self.held_back_classes),
        }

    # ----------------------------------------------------------------------------- storage
    def to_bytes(self) -> bytes:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update(memory_x=self.memory_x, memory_y=self.memory_y, heldout_x=self.heldout_x,
                       heldout_y=self.heldout_y, heldout_task=self.heldout_task, holdback_x=self.holdback_x,
                       holdback_y=self.holdback_y)
        meta = {
            "kind": "collective", "config": self.net.config.to_dict(), "spec": self.spec.to_dict(),
            "options": asdict(self.options), "label_space": self.label_space, "tasks": self.tasks,
            "accuracy_matrix": self.accuracy_matrix, "threshold": self.threshold,
            "gradients": self.recorder.to_dict(), "growth": self.growth_log,
            "held_back_classes": self.held_back_classes,
        }
        return pack(tensors, meta)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Collective":
        tensors, meta = unpack(blob)
        if meta.get("kind") != "collective":
            raise ValueError("not a collective artifact")
        net = ConvNet(NetConfig.from_dict(meta["config"]))
        net.load_state_dict(prefixed(tensors, "net."))
        c = cls(net, InputSpec(**meta["spec"]), CollectiveOptions(**meta["options"]))
        c.label_space, c.tasks = meta["label_space"], meta["tasks"]
        c.accuracy_matrix, c.threshold = meta["accuracy_matrix"], meta["threshold"]
        c.recorder = GradientRecorder.from_dict(meta["gradients"])
        c.growth_log = meta["growth"]
        c.held_back_classes = list(meta.get("held_back_classes", []))  # artifacts from before hold-back
        if "holdback_x" in tensors:
            c.holdback_x, c.holdback_y = tensors["holdback_x"], tensors["holdback_y"]
        c.memory_x, c.memory_y = tensors["memory_x"], tensors["memory_y"]
        c.heldout_x, c.heldout_y, c.heldout_task = tensors["heldout_x"], tensors["heldout_y"], tensors["heldout_task"]
        c.net.to(c.device)
        return c
