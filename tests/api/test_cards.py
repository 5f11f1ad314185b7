"""Model cards: Markdown with YAML front matter for a learngene and an individual; the same metadata in the
safetensors header (?card=true); the CLI's download writes the card beside the weights."""
from __future__ import annotations

import hashlib
import json

import yaml
from safetensors import safe_open


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    assert body.strip().startswith("# ")
    return yaml.safe_load(head)


def _registry(api, make_task) -> None:
    api.post_task(make_task(["a", "b", "c"], 6, seed=0), name="letters")
    api.post_task(make_task(["c", "d"], 6, seed=1), name="more")
    api.run_jobs()
    r = api.client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q"], 4, seed=2)),
                                               "eval_file": ("e.npz", make_task(["p", "q"], 3, seed=3))},
                        data={"epochs": "2", "learngene_id": "2", "seed": "5"})
    assert r.status_code == 202, r.text
    api.run_jobs()


def test_learngene_card(api, make_task):
    _registry(api, make_task)
    r = api.client.get("/learngenes/2/card")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    card = _front_matter(r.text)
    detail = api.client.get("/learngenes/2").json()
    assert card["id"] == 2 and card["kind"] == "learngene"
    assert card["base_model"] == "collective default v2" and card["base_model_relation"] == "extracted"
    assert [(t["name"], t["classes"]) for t in card["lineage"]["tasks"]] == [("letters", 3), ("more", 2)]
    assert card["training"]["epochs"] >= 1 and "lr" in card["training"] and "affine" in card["training"]["augmentation"]
    assert card["metrics"]["protocol"] and len(card["metrics"]["accuracy_per_task"]) == 2
    assert card["parameters"] == detail["parameters"] and card["weights"]["sha256"] == detail["sha256"]
    assert card["input"]["channels"] == 1 and card["input"]["size"] == detail["size"]
    assert card["library_versions"]["torch"] and card["library_versions"]["python"]
    assert api.client.get("/learngenes/9/card").status_code == 404


def test_individual_card_and_the_weights_header(api, make_task):
    _registry(api, make_task)
    card = _front_matter(api.client.get("/individuals/1/card").text)
    ind = api.client.get("/individuals/1").json()
    assert card["kind"] == "individual" and card["base_model"] == "learngene 2"
    assert card["base_model_relation"] == "finetune" and card["classes"] == ["p", "q"]
    assert card["lineage"]["learngene_lineage"]["tasks_seen"] == 2
    assert card["training"]["seed"] == 5 and card["training"]["epochs"] == 2
    assert card["metrics"]["eval_accuracy"] == ind["metrics"]["eval_accuracy"]
    assert "eval_file" in card["metrics"]["protocol"]
    assert card["weights"]["sha256"] == ind["sha256"]

    plain = api.client.get("/individuals/1/weights")
    assert hashlib.sha256(plain.content).hexdigest() == ind["sha256"]  # content-addressed, as before
    carded = api.client.get("/individuals/1/weights", params={"card": "true"})
    assert carded.status_code == 200 and carded.headers["x-weights-sha256"] == ind["sha256"]
    path = api.settings.data_dir / "carded.safetensors"
    path.write_bytes(carded.content)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        in_header = json.loads(meta["model_card"])
        assert in_header["weights"] == card["weights"] and in_header["training"] == card["training"]
        assert in_header["lineage"]["learngene"] == 2
        assert in_header["metrics"]["eval_accuracy"] == card["metrics"]["eval_accuracy"]
        assert "learngene" in meta  # the library's own metadata is kept
        assert f.get_tensor("classifier.weight").shape[0] == 2
