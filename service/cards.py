"""Model cards: what a learngene or an individual is, where it came from, how it was trained, what it scored.

    card = learngene_card(session, store, row)      # Card(metadata={...}, markdown="---\\n...")
    return card_response(card)                      # text/markdown

Markdown with a YAML front matter, as model hubs write them: id, kind, base_model and its relation,
lineage (tasks seen: names, class counts), training recipe, metrics with their protocol, parameters,
input spec, library versions, sha256 of the weights. The same metadata goes into the safetensors header
(`?card=true` on the weights) and into an ONNX export's metadata_props.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata as importlib_metadata
from typing import Annotated, Any

from fastapi import Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.artifacts import Store
from service.models import Collective, CollectiveVersion, Individual, Learngene, Task
from service.routers.aliases import aliases_of

CardQuery = Annotated[bool, Query(description="add the model card's metadata to the safetensors header")]
INPUT_SCALING = "uint8 / 127.5 - 1 after conversion to the input spec (channels by luminance or repetition; " \
                "size: fitted into the square keeping the aspect ratio, border-padded, resized with antialiasing)"
AUGMENTATION = ("mild random affine (shift, scale, rotation) on every input; brightness and contrast jitter on "
                "colour inputs; no flips (learngene/augment.py)")


@dataclass
class Card:
    metadata: dict[str, Any]
    body: str

    @property
    def markdown(self) -> str:
        return f"---\n{to_yaml(self.metadata)}---\n\n{self.body}"


def card_response(card: Card) -> Response:
    return Response(card.markdown, media_type="text/markdown; charset=utf-8")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the libraries that make and read these models, in this service's environment."""
    versions = {"python": platform.python_version()}
    for dist in ("learngene-service", "torch", "numpy", "safetensors", "onnx"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def artifact_meta(store: Store, digest: str) -> dict:
    """The `learngene` JSON of a safetensors artifact's header, its tensors not loaded (the bytes are read
    through the store, which verifies them, so this works on any backend)."""
    data = store.get(digest)  # whole (and verified): with an S3 store, from the local cache after the first read
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    return json.loads(header.get("__metadata__", {}).get("learngene", "{}"))


def _tasks_seen(session: Session, version: CollectiveVersion, default_epochs: int | None) -> list[dict]:
    rows = session.execute(
        select(CollectiveVersion.number, Task)
        .join(Task, Task.collective_version_id == CollectiveVersion.id)
        .where(CollectiveVersion.collective_id == version.collective_id, CollectiveVersion.number <= version.number)
        .order_by(CollectiveVersion.number)).all()
    return [{"version": number, "task_id": t.id, "name": t.name, "classes": len(t.classes),
             "samples": t.num_samples, "epochs": t.epochs or default_epochs} for number, t in rows]


def _collective_recipe(store: Store, version: CollectiveVersion) -> dict:
    options = artifact_meta(store, version.weights_sha256).get("options", {})
    keep = ("preset", "epochs", "batch_size", "lr", "weight_decay", "memory_per_class", "distill", "growth",
            "score", "seed")
    return {**{k: options[k] for k in keep if k in options}, "optimizer": "AdamW", "augmentation": AUGMENTATION}


def learngene_card(session: Session, store: Store, lg: Learngene) -> Card:
    version = lg.collective_version
    collective = session.get(Collective, version.collective_id)
    recipe = _collective_recipe(store, version)
    tasks = _tasks_seen(session, version, recipe.get("epochs"))
    row = version.accuracy_matrix[-1] if version.accuracy_matrix else []
    meta = {
        "id": lg.id, "kind": "learngene", "name": f"learngene-{lg.id}",
        "base_model": f"collective {collective.name} v{version.number}", "base_model_relation": "extracted",
        "aliases": aliases_of(session, [lg.id]).get(lg.id, []),
        "method": lg.method, "layers": lg.layers, "scores": lg.scores,
        "lineage": {"collective": collective.name, "collective_version": version.number,
                    "tasks_seen": len(tasks), "tasks": tasks, "classes_known": len(version.label_space)},
        "training": recipe,
        "metrics": {"protocol": "the collective's held-out accuracy on each task seen, measured after it learned "
                                f"task {version.number} (3 held-out samples a class by default)",
                    "accuracy_per_task": row, "average_accuracy": (version.info or {}).get("average_accuracy"),
                    "forgetting": (version.info or {}).get("forgetting")},
        "parameters": lg.parameters,
        "input": {"channels": lg.channels, "size": lg.size, "dtype": "uint8 images", "scaling": INPUT_SCALING},
        "library_versions": library_versions(),
        "weights": {"format": "safetensors", "sha256": lg.weights_sha256, "url": f"/learngenes/{lg.id}/weights"},
        "created_at": lg.created_at.isoformat(),
    }
    names = ", ".join(f"{t['name']} ({t['classes']} classes)" for t in tasks) or "none recorded"
    body = (f"# Learngene {lg.id}\n\n"
            f"Layers {lg.layers} of collective `{collective.name}` version {version.number}, chosen by "
            f"`{lg.method}` as the most stable under its gradients. {lg.parameters:,} parameters; input "
            f"{lg.channels}x{lg.size}x{lg.size}.\n\n"
            f"**Lineage.** The collective had learned {len(tasks)} task(s): {names}.\n\n"
            f"**Use.** Build a few-shot individual on it: `POST /individuals` with `learngene_id={lg.id}` "
            f"(or `learngene individuals create support.npz --learngene {lg.id}`).\n")
    return Card(meta, body)


def individual_card(session: Session, store: Store, ind: Individual) -> Card:
    lg = session.get(Learngene, ind.learngene_id) if ind.learngene_id else None
    own = artifact_meta(store, ind.weights_sha256)
    scratch = ind.init == "scratch"
    metrics = {k: v for k, v in (ind.metrics or {}).items() if k != "history"}
    meta = {
        "id": ind.id, "kind": "individual", "name": f"individual-{ind.id}",
        "base_model": f"learngene {lg.id}" if lg else None,
        "base_model_relation": "architecture only (trained from scratch)" if scratch else "finetune",
        "classes": ind.classes, "shots": ind.shots,
        "lineage": {"learngene": lg.id if lg else None,
                    "inherited_layers": own.get("layers", []),
                    "learngene_lineage": learngene_card(session, store, lg).metadata["lineage"] if lg else None},
        "training": {**{k: v for k, v in (ind.options or {}).items() if v is not None}, "optimizer": "AdamW",
                     "augmentation": AUGMENTATION},
        "metrics": {"protocol": "train_accuracy: on the support set; eval_accuracy: on the uploaded eval_file "
                                "samples whose class the individual knows; the unknown flag's threshold keeps "
                                f"95% of known samples ({metrics.get('unknown_threshold_from', 'support views')})",
                    **metrics},
        "unknown_score": {"score": own.get("score"), "threshold": own.get("threshold")},
        "parameters": ind.parameters,
        "input": {"channels": ind.channels, "size": ind.size, "dtype": "uint8 images", "scaling": INPUT_SCALING},
        "library_versions": library_versions(),
        "weights": {"format": "safetensors", "sha256": ind.weights_sha256, "url": f"/individuals/{ind.id}/weights",
                    "onnx": f"/individuals/{ind.id}/model.onnx"},
        "created_at": ind.created_at.isoformat(),
    }
    eval_acc = metrics.get("eval_accuracy")
    body = (f"# Individual {ind.id}\n\n"
            f"A {len(ind.classes)}-class model ({', '.join(ind.classes)}) "
            + (f"trained from scratch with learngene {lg.id}'s architecture" if scratch and lg else
               f"built on learngene {lg.id} (inherited layers {own.get('layers', [])})" if lg else "")
            + f", {ind.parameters:,} parameters, input {ind.channels}x{ind.size}x{ind.size}.\n\n"
            + (f"**Eval accuracy** {eval_acc:.3f} on the eval set sent with it.\n\n" if eval_acc is not None else "")
            + size_paragraph(metrics.get("size"))
            + f"**Use.** `POST /individuals/{ind.id}/predictions`, or download it as ONNX "
              f"(`learngene individuals download {ind.id} --format onnx`).\n")
    return Card(meta, body)


def size_paragraph(size: dict | None) -> str:
    """The card's line on a model built to a parameter budget (learngene/sizing.py): how each layer came to be."""
    if not size:
        return ""
    def origin(r: dict) -> str:
        return ")" if r["derived"] == "fresh" else f" from conv{r['source_position']}'s {r['source_width']})"

    layers = "; ".join(f"conv{r['position']} {r['width']} ch ({r['derived']}{origin(r)}" for r in size["layers"])
    return (f"**Size.** Built to a budget of {size['max_parameters']:,} parameters: {size['parameters']:,} used, "
            f"{size['multiplier']:.3g}× the default widths, {size['repeats']} repeated layer(s). Layers: {layers}.\n\n")


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML block style for mappings and lists of mappings; scalars and plain lists as JSON (valid YAML 1.2)."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, dict) and v or isinstance(v, list) and any(isinstance(i, dict) for i in v):
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {json.dumps(v, default=str, ensure_ascii=False)}\n")
        return "".join(lines)
    if isinstance(value, list):
        out = []
        for item in value:
            text = to_yaml(item, indent + 1) if isinstance(item, dict) else \
                f"{pad}  {json.dumps(item, default=str)}\n"
            out.append(f"{pad}- {text.lstrip()}")
        return "".join(out)
    return f"{pad}{json.dumps(value, default=str)}\n"
