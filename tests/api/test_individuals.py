"""POST /individuals, GET /individuals/{id}, predictions and weights, through the app."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load as load_safetensors

from learngene import Individual


@pytest.fixture
def grown(api, make_task):
    """Two tasks learned: learngenes 1 and 2 exist."""
    for i, classes in enumerate([["a", "b", "c"], ["d", "e", "f"]]):
        api.post_task(make_task(classes, 8, seed=i))
    api.run_jobs()
    return api


def order(api, support: bytes, eval_set: bytes | None = None, **form) -> dict:
    files = {"file": ("support.npz", support)}
    if eval_set is not None:
        files["eval_file"] = ("query.npz", eval_set)
    r = api.client.post("/individuals", files=files, data={"epochs": "3", **form})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/jobs/{r.json()['id']}"
    api.run_jobs()
    job = api.client.get(f"/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def test_individual_from_newest_learngene_reports_metrics_and_predicts(grown, make_task):
    api = grown
    job = order(api, make_task(["p", "q", "r"], 5, seed=7), make_task(["p", "q", "r"], 6, seed=8), seed="3")
    assert job["kind"] == "individual" and set(job["result"]) >= {"individual_id"}
    ind = api.client.get(f"/individuals/{job['result']['individual_id']}").json()
    assert ind["learngene_id"] == api.client.get("/learngenes").json()["items"][0]["id"]  # the newest
    # No init field: auto picked one of the four by cross-validation over the shots, and says why.
    auto = ind["metrics"]["auto"]
    assert ind["options"]["init"] == "auto" and ind["init"] == auto["init"]
    assert set(auto["scores"]) == {"learngene", "scratch", "instant", "probe"} and "cross-validation" in auto["by"]
    assert ind["classes"] == ["p", "q", "r"] and ind["parameters"] > 0
    assert ind["shots"] == {"p": 5, "q": 5, "r": 5} and ind["options"]["seed"] == 3
    assert 0.0 <= ind["metrics"]["train_accuracy"] <= 1.0 and 0.0 <= ind["metrics"]["eval_accuracy"] <= 1.0

    images = np.load(io.BytesIO(make_task(["q", "p", "r"], 2, seed=9)))["x"]
    buf = io.BytesIO()
    np.savez(buf, x=images)
    r = api.client.post(f"/individuals/{ind['id']}/predictions", files={"file": ("x.npz", buf.getvalue())})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 6
    for p in predictions:
        assert p["label"] in ind["classes"] and isinstance(p["unknown"], bool)
        assert abs(sum(p["probabilities"].values()) - 1.0) < 1e-4
    # In input order: the same answer as the model loaded from the downloaded weights.
    weights = api.client.get(f"/individuals/{ind['id']}/weights")
    assert weights.status_code == 200 and "conv" in " ".join(load_safetensors(weights.content))
    local = Individual.from_bytes(weights.content).predict(images)
    assert [p["label"] for p in predictions] == [p["label"] for p in local]

    png = io.BytesIO()
    Image.fromarray(images[0][..., 0] if images.ndim == 4 else images[0]).save(png, format="PNG")
    one = api.client.post(f"/individuals/{ind['id']}/predictions", files={"file": ("one.png", png.getvalue())})
    assert one.status_code == 200 and one.json()["predictions"][0]["label"] == predictions[0]["label"]


def test_scratch_and_an_explicit_learngene(grown, make_task):
    api = grown
    first_gene = api.client.get("/learngenes").json()["items"][-1]["id"]
    job = order(api, make_task(["p", "q"], 5, seed=1), learngene_id=str(first_gene), init="scratch")
    ind = api.client.get(f"/individuals/{job['result']['individual_id']}").json()
    # A scratch model inherits nothing: no learngene_id, not among the learngene's individuals; the version whose
    # shape it copies is named instead.
    assert ind["learngene_id"] is None and ind["init"] == "scratch" and "learngene" not in ind["links"]
    assert ind["based_on_collective_version"] == {"collective": "default", "number": 1}
    assert "eval_accuracy" not in ind["metrics"]
    assert api.client.get("/individuals", params={"learngene_id": first_gene}).json()["items"] == []
    built = order(api, make_task(["p", "q"], 5, seed=1), learngene_id=str(first_gene))
    listed = api.client.get("/individuals", params={"learngene_id": first_gene}).json()["items"]
    assert [i["id"] for i in listed] == [built["result"]["individual_id"]]
    assert listed[0]["learngene_id"] == first_gene and listed[0]["based_on_collective_version"] is None


def test_no_learngene_yet_is_a_conflict(api, make_task):
    r = api.client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q"], 5))})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert "upload a task first" in r.json()["detail"] and api.sent == []


def test_unknown_ids_and_bad_support_sets(grown, make_task):
    api = grown
    support = make_task(["p", "q"], 5)
    r = api.client.post("/individuals", files={"file": ("s.npz", support)}, data={"learngene_id": "999"})
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-learngene"
    r = api.client.post("/individuals", files={"file": ("s.npz", make_task(["p"], 5))})
    assert r.status_code == 422 and "at least 2 classes" in r.json()["detail"]
    r = api.client.post("/individuals", files={"file": ("s.npz", support),
                                               "eval_file": ("e.npz", make_task(["x", "y"], 3))})
    assert r.status_code == 422 and "shares no class" in r.json()["detail"]
    r = api.client.post("/individuals", files={"file": ("s.npz", support)}, data={"init": "magic"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "init"
    for path in ("/individuals/999", "/individuals/999/weights"):
        assert api.client.get(path).status_code == 404
    r = api.client.post("/individuals/999/predictions", files={"file": ("x.png", b"not an image")})
    assert r.status_code == 404 and r.json()["detail"] == "individual 999 does not exist"
    assert api.sent == [] and api.client.get("/individuals").json()["items"] == []


def test_predictions_refuse_what_is_not_an_image(grown, make_task):
    api = grown
    job = order(api, make_task(["p", "q"], 5))
    ind_id = job["result"]["individual_id"]
    r = api.client.post(f"/individuals/{ind_id}/predictions", files={"file": ("x.png", b"certainly not a png")})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("'x.png' is neither an .npz with an `x` array nor an image")


@pytest.mark.parametrize(("init", "head"), [("instant", "cosine"), ("probe", "linear")])
def test_instant_and_probe_individuals_need_no_training_and_are_served_like_the_others(grown, make_task, init, head):
    """Both are the collective's whole frozen trunk: instant with a prototype head, probe with a fitted linear one."""
    api = grown
    job = order(api, make_task(["p", "q", "r"], 3, seed=7), make_task(["p", "q", "r"], 4, seed=8), init=init)
    ind = api.client.get(f"/individuals/{job['result']['individual_id']}").json()
    assert ind["init"] == init and ind["metrics"]["history"] == [] and "eval_accuracy" in ind["metrics"]
    assert ind["metrics"]["train_accuracy"] > 0.5  # 3 classes: a head that learned nothing would sit near 1/3
    gene = api.client.get(f"/learngenes/{ind['learngene_id']}").json()
    assert ind["parameters"] > gene["parameters"]  # the whole trunk, of which the learngene is a part
    images = np.load(io.BytesIO(make_task(["q", "p"], 2, seed=9)))["x"]
    buf = io.BytesIO()
    np.savez(buf, x=images)
    r = api.client.post(f"/individuals/{ind['id']}/predictions", files={"file": ("x.npz", buf.getvalue())})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 4
    weights = api.client.get(f"/individuals/{ind['id']}/weights")
    assert Individual.from_bytes(weights.content).net.config.head == head


def test_distillation_is_on_by_default_and_a_request_can_set_or_refuse_it(grown, make_task):
    """The learngene individual distils the instant model (default weight); `distill` sets it; bad values are 422."""
    from learngene.individual import DEFAULT_DISTILL
    api = grown
    support = make_task(["p", "q"], 5, seed=2)
    for form, expected in (({}, DEFAULT_DISTILL), ({"distill": "0"}, 0.0), ({"distill": "1.5"}, 1.5)):
        job = order(api, support, init="learngene", **form)
        ind = api.client.get(f"/individuals/{job['result']['individual_id']}").json()
        assert ind["init"] == "learngene" and ind["options"]["distill"] == expected
        assert ind["metrics"]["distilled"] is (expected > 0)  # the worker gave it the collective's trunk
    sent = len(api.sent)
    for bad in ("-1", "101", "lots"):
        r = api.client.post("/individuals", files={"file": ("s.npz", support)}, data={"distill": bad})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"][-1] == "distill"
    assert len(api.sent) == sent
