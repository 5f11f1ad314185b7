"""ONNX export of an individual model, for deployment targets that do not run PyTorch.

    blob = onnx_bytes(Individual.from_bytes(weights), card_metadata)     # GET /individuals/{id}/model.onnx

The graph: input `images` float32 (N, C, S, S), values uint8/127.5 - 1 after conversion to the individual's
input spec (channels, size: the same rules as the service's own predictions, docs/method.md); N is dynamic.
Output `probabilities` (N, classes): the net's softmax, so a consumer needs nothing else. metadata_props:
class_names (a JSON list), channels, size, unknown_threshold and unknown_score (max_softmax: 1 - max
probability above the threshold flags the image as unknown), and the model card (JSON).
"""
from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict

OPSET = 17
_cache: OrderedDict[str, bytes] = OrderedDict()  # weights sha256 -> ONNX bytes (export takes about a second)
_lock = threading.Lock()
CACHE_SIZE = 8


def export(individual, card: dict | None = None) -> bytes:
    """The individual as ONNX bytes (the legacy TorchScript exporter: no onnxscript needed)."""
    import onnx  # torch and onnx load on the first export, not at API start
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(images), dim=1)

    model = WithSoftmax(individual.net).to("cpu").eval()
    spec = individual.spec
    example = torch.zeros(2, spec.channels, spec.size, spec.size)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (example,), buf, input_names=["images"], output_names=["probabilities"],
                          dynamic_axes={"images": {0: "N"}, "probabilities": {0: "N"}}, opset_version=OPSET,
                          dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    props = {"class_names": json.dumps(individual.class_names), "channels": str(spec.channels),
             "size": str(spec.size), "input_scaling": "uint8 / 127.5 - 1",
             "unknown_score": individual.score, "unknown_threshold": repr(float(individual.threshold))}
    if card is not None:
        props["model_card"] = json.dumps(card, default=str)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "learngene-service"
    return proto.SerializeToString()


def onnx_bytes(digest: str, load, card: dict | None = None) -> bytes:
    """Cached export of the individual whose weights hash to `digest` (`load()` gives the Individual)."""
    with _lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
    blob = export(load(), card)
    with _lock:
        _cache[digest] = blob
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return blob
