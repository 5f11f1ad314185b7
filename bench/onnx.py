"""ONNX runtime against the service's in-process predictions, for one individual model (not a test).

    python -m bench.onnx                 # sizes 32 (gray) and 64 (RGB); batches of 1 and 64
    python -m bench.onnx --quick         # fewer repetitions

Builds an individual with the library (one task, gradient learngene, a 4-way support set), exports it as
GET /individuals/{id}/model.onnx does (service/onnx_export.py), then times, in the same run and on the same
uint8 images:
- `in-process`: Individual.predict(images) (what POST /individuals/{id}/predictions runs: conversion to the
  input spec, the net, softmax, the unknown flag);
- `onnxruntime`: the conversion (learngene.data.to_input) plus InferenceSession.run on the exported graph;
- `onnxruntime (graph only)`: InferenceSession.run on already converted float32 input.
Reports medians (ms per call) and ratios to in-process, and the largest probability difference and label
agreement. Prints a table and writes var/bench/onnx.json. Threads: torch and onnxruntime both get
--threads (default 1, as the service's API process).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _individual(size: int, channels: int):
    from learngene import Collective, InputSpec, Learngene, TaskDataset, TrainOptions, train_individual
    from learngene.datasets import pattern_images

    def dataset(classes, per_class, seed):
        x, ys = pattern_images(classes, per_class, size=size, seed=seed)
        if channels == 3:
            x = np.repeat(x[..., None], 3, axis=-1)
        names = sorted(set(ys.tolist()))
        return TaskDataset(x, np.array([names.index(y) for y in ys]), names)

    collective = Collective.create(InputSpec(channels=channels, size=size), preset="small")
    collective.learn_task(dataset(["a", "b", "c", "d"], 12, 0), epochs=2)
    gene = Learngene.extract(collective, method="gradient")
    return train_individual(dataset(["p", "q", "r", "s"], 5, 1), gene, TrainOptions(epochs=5))


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from learngene.data import to_input
    from service.onnx_export import export

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    repeats = 15 if args.quick else 60
    rows = []
    for size, channels in ((32, 1), (64, 3)):
        ind = _individual(size, channels)
        session = ort.InferenceSession(export(ind), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        for batch in (1, 64):
            shape = (batch, size, size) if channels == 1 else (batch, size, size, channels)
            images = rng.integers(0, 256, size=shape, dtype=np.uint8)
            converted = to_input(images, ind.spec).numpy().astype(np.float32)
            served = ind.predict(images)
            (probs,) = session.run(["probabilities"], {"images": converted})
            expected = np.array([[p["probabilities"][n] for n in ind.class_names] for p in served])
            agree = float(np.mean([ind.class_names[i] == p["label"] for i, p in zip(probs.argmax(1), served)]))
            in_process = _median_ms(lambda: ind.predict(images), repeats)
            with_conversion = _median_ms(lambda: session.run(["probabilities"], {
                "images": to_input(images, ind.spec).numpy().astype(np.float32)}), repeats)
            graph_only = _median_ms(lambda: session.run(["probabilities"], {"images": converted}), repeats)
            rows.append({"input": f"{channels}x{size}x{size}", "batch": batch, "parameters": ind.parameters,
                         "in_process_ms": in_process, "onnxruntime_ms": with_conversion,
                         "onnxruntime_graph_only_ms": graph_only,
                         "ratio_onnx_to_in_process": with_conversion / in_process,
                         "ratio_graph_only_to_in_process": graph_only / in_process,
                         "max_abs_probability_difference": float(np.abs(probs - expected).max()),
                         "label_agreement": agree})

    print(f"ONNX runtime vs in-process predictions (medians of {repeats} calls, {args.threads} thread(s), ms per call)")
    print("| input | batch | in-process | onnxruntime (+conversion) | ratio | graph only | ratio | max |Δp| | labels equal |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['input']} | {r['batch']} | {r['in_process_ms']:.2f} | {r['onnxruntime_ms']:.2f} | "
              f"{r['ratio_onnx_to_in_process']:.2f} | {r['onnxruntime_graph_only_ms']:.2f} | "
              f"{r['ratio_graph_only_to_in_process']:.2f} | {r['max_abs_probability_difference']:.1e} | "
              f"{r['label_agreement']:.0%} |")
    out = ROOT / "var" / "bench" / "onnx.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "repeats": repeats, "threads": args.threads,
                               "torch": torch.__version__, "onnxruntime": ort.__version__,
                               "machine": platform.platform()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
