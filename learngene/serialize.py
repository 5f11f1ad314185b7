"""Safetensors bytes with a JSON header: the one format every model here is stored in.

Never pickle: `safetensors` holds only tensors and a str→str metadata map, so loading a file
from anyone runs no code.

    blob = pack({"w": torch.zeros(2)}, {"kind": "learngene"})
    tensors, meta = unpack(blob)
"""
from __future__ import annotations

import json

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


def pack(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return st_save(clean, metadata={"learngene": json.dumps(meta)})


def unpack(blob: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """Inverse of `pack`; raises ValueError if the bytes are not one of our safetensors files."""
    try:
        tensors = st_load(blob)
        meta = _metadata(blob)
    except Exception as e:  # noqa: BLE001 - any parse failure means "not our file"
        raise ValueError(f"not a learngene safetensors file: {e}") from e
    return tensors, meta


def _metadata(blob: bytes) -> dict:
    # The header is an 8-byte little-endian length, then JSON; safetensors' own `safe_open` needs a path.
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    return json.loads(header["__metadata__"]["learngene"])


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys starting with `prefix`, without it."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
