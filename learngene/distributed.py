"""Data-parallel growth of the collective: PyTorch DistributedDataParallel over one worker's devices.

    processes = ddp_processes("auto")           # LEARNGENE_DDP_PROCESSES: "1" (off), "N", "auto" (one per GPU)
    collective, report = learn_task_parallel(collective, ds, processes, progress=print, should_stop=stop)

The caller's process starts one process per rank (`python -m learngene.distributed`), hands them the collective
and the task as safetensors files in a scratch folder, forwards rank 0's progress lines to `progress`, answers
`should_stop()` by leaving a `cancel` file, and reads back rank 0's grown collective. Never pickle: the files
are the only payload. NCCL when the devices are CUDA GPUs (rank r on GPU r), gloo on the CPU.

Inside, every rank runs the same `Collective.learn_task` with the same seeds, so hold-back, split, growth and
every global batch (drawn from one generator) are the same on all ranks; the one training loop
(`training.train(parallel=...)`) keeps this rank's rows of each global batch, and DDP averages the gradients,
so the global batch and the number of steps are those of one device. Where the ranks would decide apart:
- BatchNorm normalises with the statistics of the global batch: torch's SyncBatchNorm on CUDA; on the CPU,
  where torch's refuses to run, `GlobalBatchNorm` (sums all-reduced, differentiably). The running statistics
  are then the same on every rank as on one device, and no buffer needs broadcasting.
- held-out accuracy (convergence, the best epoch) is rank 0's, broadcast; epoch loss/accuracy are summed;
- cancel is rank 0's answer, broadcast every step, so all ranks stop at the same step;
- the gradient statistics that choose the learngene are recorded after DDP's all-reduce (the statistics of
  the global-batch gradient, as on one device) and their per-task sums are all-reduced (mean) once more, so
  every rank holds one table; the learngene itself is then chosen once, by the caller, on rank 0's weights;
- torch's global generator (the head's new class rows draw from it) goes to the ranks and comes back, so N
  processes follow the sequence of one.
A failing rank writes its error and exits; the caller kills the others at once. Ranks whose caller died stop
at the next step (rank 0 sees its parent change) or when a collective times out (`timeout_s`).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from .data import DatasetError, TaskDataset
from .device import select_device
from .serialize import pack, unpack
from .training import Cancelled

RANK_ENTRY = "learngene.distributed:learn_task_rank"


# ------------------------------------------------------------------------------------------ the setting
def ddp_processes(setting: str | int) -> int:
    """Processes for data-parallel growth from `LEARNGENE_DDP_PROCESSES`: 1 = off, N, or auto = one per GPU."""
    value = str(setting).strip().lower()
    gpus = torch.cuda.device_count() if select_device().type == "cuda" else 0
    if value == "auto":
        return max(gpus, 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"LEARNGENE_DDP_PROCESSES must be a positive integer or 'auto', got {setting!r}")
    n = int(value)
    if gpus and n > gpus:  # NCCL wants one process per GPU
        raise ValueError(f"LEARNGENE_DDP_PROCESSES={n} but only {gpus} GPU(s) are visible")
    return n


# ------------------------------------------------------------------------------------------ BatchNorm
class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: every rank's gradient of the sum, summed, flows back to each part."""

    @staticmethod
    def forward(ctx, part: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = part.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d normalising with the statistics of the global batch, on any device (gloo included).

    In training, the per-channel sums, squared sums (float64: no cancellation) and counts are all-reduced
    with an all-reduce whose backward all-reduces the gradients: with DDP's averaging this is the gradient of
    the global batch. Eval mode is plain BatchNorm with the running statistics.
    """

    group = None  # the statistics' process group (set by Parallel.wrap: one apart from DDP's gradients)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        xd = x.double()
        count = torch.full((1,), x.numel() / c, dtype=torch.float64, device=x.device)
        total = _SumOverRanks.apply(torch.cat([xd.sum(dims), (xd * xd).sum(dims), count]), self.group)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.to(x.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_((var * n / (n - 1).clamp_min(1)).to(x.dtype), alpha=m)
        shape = (1, c) + (1,) * (x.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        y = (x - mean.to(x.dtype).view(shape)) * scale.view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def swap_batchnorm(net: nn.Module, make: Callable[[nn.Module], nn.Module]) -> None:
    """Replace every 2-d BatchNorm of `net` (the only kind a ConvNet has) in place by `make(old)`."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                setattr(parent, name, make(child))


def _same_batchnorm(cls: type) -> Callable[[nn.Module], nn.Module]:
    """A maker for `swap_batchnorm`: a `cls` sharing the old module's parameters and buffers (so the optimizer
    and state_dict keys see no change) and its train/eval mode."""

    def make(old: nn.Module) -> nn.Module:
        new = cls(old.num_features, eps=old.eps, momentum=old.momentum, affine=old.affine,
                  track_running_stats=old.track_running_stats)
        if old.affine:
            new.weight, new.bias = old.weight, old.bias
        if old.track_running_stats:
            new.running_mean, new.running_var = old.running_mean, old.running_var
            new.num_batches_tracked = old.num_batches_tracked
        return new.train(old.training)

    return make


# ------------------------------------------------------------------------------------------ one rank's view
class Parallel:
    """One rank of the process group: what `training.train` and `Collective` ask of data parallelism.

        parallel = Parallel.join(rank, world, port, workdir=folder)     # in each rank's process
        train(net, draw, steps=..., parallel=parallel)
    """

    def __init__(self, rank: int, world: int, device: torch.device, workdir: Path | None = None):
        self.rank, self.world, self.device, self.workdir = rank, world, device, workdir
        self.parent = os.getppid()
        self.bn_group = None

    @classmethod
    def join(cls, rank: int, world: int, port: int, workdir: Path | None = None,
             timeout_s: float = 600.0) -> "Parallel":
        device = select_device()
        if device.type == "cuda":
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
        parallel = cls(rank, world, device, workdir)
        if device.type != "cuda":
            parallel.bn_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
        return parallel

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # training.train
    def wrap(self, net: nn.Module) -> nn.Module:
        """`net` with global-batch BatchNorm (in place, undone by `unwrap`), inside DDP (which broadcasts rank 0's
        weights and buffers once, so every rank starts from the same state)."""
        if self.device.type == "cuda":
            swap_batchnorm(net, _same_batchnorm(nn.SyncBatchNorm))
        else:
            make = _same_batchnorm(GlobalBatchNorm)

            def global_bn(old: nn.Module) -> nn.Module:
                new = make(old)
                new.group = self.bn_group
                return new

            swap_batchnorm(net, global_bn)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=False)

    def unwrap(self, net: nn.Module) -> None:
        swap_batchnorm(net, _same_batchnorm(nn.BatchNorm2d))

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This rank's rows of a global batch, and the weight of its mean loss: DDP averages the ranks'
        gradients, and unequal shards (64 rows on 3 ranks) must count by their size."""
        part = torch.tensor_split(torch.arange(len(y)), self.world)[self.rank]
        return x[part], y[part], len(part) * self.world / max(len(y), 1)

    def sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    # Collective
    def mean(self, t: torch.Tensor) -> torch.Tensor:
        out = t.to(self._comm_device, copy=True)
        dist.all_reduce(out)
        return (out / self.world).to(t.device)

    def from_main(self, value: float) -> float:
        """Rank 0's value on every rank."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        dist.broadcast(t, 0)
        return float(t.item())

    def should_stop(self) -> bool:
        """Rank 0's answer on every rank: the caller asked to cancel (a `cancel` file) or is gone."""
        stop = 0.0
        if self.main and self.workdir is not None:
            stop = float((self.workdir / "cancel").exists() or os.getppid() != self.parent)
        return self.from_main(stop) > 0

    def report(self, info: dict) -> None:
        """Rank 0's progress, one JSON line the caller forwards (other ranks stay quiet)."""
        if self.main and self.workdir is not None:
            with open(self.workdir / "progress.jsonl", "a") as f:
                f.write(json.dumps(info, default=_plain) + "\n")

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")  # NCCL: CUDA tensors only


# ------------------------------------------------------------------------------------------ the caller's side
def learn_task_parallel(collective, ds: TaskDataset, processes: int, *, epochs: int | None = None,
                        progress: Callable[[dict], None] | None = None,
                        should_stop: Callable[[], bool] | None = None, name: str | None = None,
                        timeout_s: float = 600.0, threads: int = 1):
    """`collective.learn_task(ds, ...)` on `processes` ranks; returns (the grown collective, its report).

    With one process this is `collective.learn_task` itself, in this process (the collective grows in place
    and is returned): the code path of single-device growth. Otherwise the given collective is left as it
    was and a new one returns; `progress` and `should_stop` are called in this process either way."""
    from .collective import Collective

    if processes == 1:
        return collective, collective.learn_task(ds, epochs=epochs, progress=progress, should_stop=should_stop,
                                                 name=name)
    workdir = Path(tempfile.mkdtemp(prefix="learngene-ddp-"))
    try:
        (workdir / "collective.safetensors").write_bytes(collective.to_bytes())
        # torch's global generator goes along and comes back: the head's new class rows are drawn from it, so
        # the ranks start them where this process would, and the next task here continues where rank 0 ended.
        x, y, rng = torch.from_numpy(ds.x), torch.from_numpy(ds.y), torch.get_rng_state()
        (workdir / "task.safetensors").write_bytes(pack({"x": x, "y": y, "rng": rng},
                                                        {"class_names": ds.class_names}))
        (workdir / "job.json").write_text(json.dumps({"epochs": epochs, "name": name}))
        run_ranks(RANK_ENTRY, processes, workdir, progress=progress, should_stop=should_stop,
                  timeout_s=timeout_s, threads=threads)
        grown = Collective.from_bytes((workdir / "result.safetensors").read_bytes())
        torch.set_rng_state(unpack((workdir / "rng.safetensors").read_bytes())[0]["rng"])
        return grown, json.loads((workdir / "report.json").read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_ranks(entry: str, processes: int, workdir: Path, *, progress: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None, timeout_s: float = 600.0, threads: int = 1,
              poll_s: float = 0.2, cwd: Path | None = None) -> None:
    """Run `entry` ("module:function", called as function(parallel, workdir)) on `processes` ranks, started in
    `cwd` (default: this one, where `entry`'s module must be importable); return when all succeeded.

    The first rank to fail ends the others, and its error is raised here (Cancelled, DatasetError and
    ValueError as themselves: the worker tells users their meaning)."""
    port = free_port()
    cmd = [sys.executable, "-m", "learngene.distributed", entry, str(workdir), "--world", str(processes),
           "--port", str(port), "--timeout", str(timeout_s), "--threads", str(threads)]
    procs = [subprocess.Popen([*cmd, "--rank", str(r)], cwd=cwd) for r in range(processes)]
    read = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            read = _forward_progress(workdir, read, progress)
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                raise _rank_error(workdir, failed, codes)
            if all(c == 0 for c in codes):
                return
            if should_stop is not None and should_stop():
                (workdir / "cancel").touch()
            time.sleep(poll_s)
    finally:
        for p in procs:  # a rank blocked in a collective waits for one that failed: end it now
            if p.poll() is None:
                p.kill()
            p.wait()


def _forward_progress(workdir: Path, read: int, progress: Callable[[dict], None] | None) -> int:
    path = workdir / "progress.jsonl"
    if not path.exists():
        return read
    with open(path, "rb") as f:
        f.seek(read)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
    for line in complete.splitlines():
        if progress is not None:
            progress(json.loads(line))
    return read + len(complete)


def _rank_error(workdir: Path, failed: list[int], codes: list[int | None]) -> Exception:
    """The first error written: the cause (its peers then fail on the closed connection, or are killed)."""
    errors = sorted(workdir.glob("error-*.json"), key=lambda p: p.stat().st_mtime_ns)
    if not errors:
        return RuntimeError(f"rank {failed[0]} exited with code {codes[failed[0]]} before writing its error")
    err, rank = json.loads(errors[0].read_text()), errors[0].stem.split("-")[1]
    kind = {"Cancelled": Cancelled, "DatasetError": DatasetError, "ValueError": ValueError}.get(err["type"])
    return kind(err["message"]) if kind else RuntimeError(f"rank {rank}: {err['type']}: {err['message']}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ a rank's side
def learn_task_rank(parallel: Parallel, workdir: Path) -> None:
    """One rank of `learn_task_parallel`: the same learn_task on every rank; rank 0 writes the result."""
    from .collective import Collective

    job = json.loads((workdir / "job.json").read_text())
    tensors, meta = unpack((workdir / "task.safetensors").read_bytes())
    ds = TaskDataset(tensors["x"].numpy(), tensors["y"].numpy(), meta["class_names"])
    c = Collective.from_bytes((workdir / "collective.safetensors").read_bytes())
    torch.set_rng_state(tensors["rng"])  # after from_bytes, whose net construction draws from it
    c.parallel, c.device = parallel, parallel.device
    c.net.to(parallel.device)
    report = c.learn_task(ds, epochs=job["epochs"], progress=parallel.report if parallel.main else None,
                          should_stop=parallel.should_stop, name=job["name"])
    if parallel.main:  # written then renamed: the caller never reads half a file
        _write_atomic(workdir / "rng.safetensors", pack({"rng": torch.get_rng_state()}, {}))
        _write_atomic(workdir / "result.safetensors", c.to_bytes())
        _write_atomic(workdir / "report.json", json.dumps(report, default=_plain).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _plain(value):
    """JSON for numpy and torch values in reports."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="one rank of data-parallel training (started by run_ranks)")
    p.add_argument("entry")
    p.add_argument("workdir", type=Path)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    parallel = None
    try:
        parallel = Parallel.join(a.rank, a.world, a.port, a.workdir, a.timeout)
        module, function = a.entry.split(":")
        getattr(importlib.import_module(module), function)(parallel, a.workdir)
    except BaseException as e:  # noqa: BLE001 - whatever it was, the caller must hear of it
        if not isinstance(e, Cancelled):
            traceback.print_exc()
        _write_atomic(a.workdir / f"error-{a.rank}.json",
                      json.dumps({"type": type(e).__name__, "message": str(e)}).encode())
        sys.stderr.flush()
        os._exit(1)  # no clean-up that could wait on ranks that are gone
    parallel.close()


if __name__ == "__main__":
    main()
