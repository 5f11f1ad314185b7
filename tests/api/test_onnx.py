"""ONNX export over HTTP: onnxruntime gives the service's own labels on 64 images, probabilities within 1e-4."""
from __future__ import annotations

import io
import json

import numpy as np
import onnx
import onnxruntime as ort

from learngene.data import InputSpec, to_input


def test_onnx_model_matches_the_service_predictions(api, make_task):
    api.post_task(make_task(["a", "b", "c"], 6, seed=0))
    api.run_jobs()
    r = api.client.post("/individuals", files={"file": ("s.npz", make_task(["p", "q", "r"], 5, seed=1))},
                        data={"epochs": "2"})
    assert r.status_code == 202
    api.run_jobs()

    blob = api.client.get("/individuals/1/model.onnx")
    assert blob.status_code == 200
    model = onnx.load_from_string(blob.content)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["class_names"]) == ["p", "q", "r"]
    channels, size = int(props["channels"]), int(props["size"])
    assert (channels, size) == (1, api.client.get("/individuals/1").json()["size"])
    assert json.loads(props["model_card"])["kind"] == "individual"
    session = ort.InferenceSession(blob.content, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_inputs()[0].shape[0] == "N"  # dynamic batch

    # 64 images of another size (20x20 RGB), so the conversion to the input spec is exercised too.
    x = np.random.default_rng(7).integers(0, 256, size=(64, 20, 20, 3), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, x=x)
    served = api.client.post("/individuals/1/predictions", files={"file": ("x.npz", buf.getvalue())}).json()
    images = to_input(x, InputSpec(channels=channels, size=size)).numpy().astype(np.float32)
    (probabilities,) = session.run(["probabilities"], {"images": images})
    names = json.loads(props["class_names"])
    assert probabilities.shape == (64, 3)
    assert [names[i] for i in probabilities.argmax(1)] == [p["label"] for p in served["predictions"]]
    expected = np.array([[p["probabilities"][n] for n in names] for p in served["predictions"]])
    assert np.abs(probabilities - expected).max() < 1e-4
    (one,) = session.run(None, {"images": images[:1]})  # another batch size, same graph
    assert one.shape == (1, 3) and np.allclose(one[0], probabilities[0], atol=1e-5)


def test_onnx_of_a_missing_individual_is_404(api):
    r = api.client.get("/individuals/5/model.onnx")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
