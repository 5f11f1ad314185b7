"""POST /individuals with max_parameters: one support set, models at three budgets; a budget too small is a 422."""
from __future__ import annotations

import io

import numpy as np
import pytest


@pytest.fixture
def grown(api, make_task):
    api.post_task(make_task(["a", "b", "c"], 8, seed=0))
    api.run_jobs()
    return api


def counts(api) -> tuple[int, int]:
    jobs = api.client.get("/jobs").json()["items"]
    return len(jobs), len(api.client.get("/individuals").json()["items"])


def test_individuals_at_three_budgets_respect_them_and_predict(grown, make_task):
    api = grown
    support = make_task(["p", "q", "r"], 4, seed=7)
    files = {"file": ("support.npz", support)}
    before = counts(api)
    r = api.client.post("/individuals", files=files, data={"max_parameters": "10", "init": "learngene"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == "/problems/budget-too-small" and problem["max_parameters"] == 10
    least = problem["smallest_budget"]
    assert least > 10 and str(least) in problem["detail"]
    assert counts(api) == before and not api.sent  # nothing queued, nothing written

    images = np.load(io.BytesIO(make_task(["q", "p"], 2, seed=9)))["x"]
    buf = io.BytesIO()
    np.savez(buf, x=images)
    sizes = []
    for budget in (least, 4 * least, 40 * least):
        r = api.client.post("/individuals", files=files,
                            data={"max_parameters": str(budget), "init": "learngene", "epochs": "2"})
        assert r.status_code == 202, r.text
        api.run_jobs()
        job = api.client.get(f"/jobs/{r.json()['id']}").json()
        assert job["status"] == "succeeded", job
        ind = api.client.get(f"/individuals/{job['result']['individual_id']}").json()
        assert ind["parameters"] <= budget and ind["options"]["max_parameters"] == budget
        sizing = ind["sizing"]
        assert sizing["max_parameters"] == budget and sizing["parameters"] == ind["parameters"]
        assert {row["derived"] for row in sizing["layers"]} <= {
            "inherited", "shrunk-even", "shrunk-importance", "shrunk-importance, refitted", "widened", "repeated",
            "fresh"}
        assert any(row["derived"] != "fresh" for row in sizing["layers"])  # something came from the learngene
        card = api.client.get(f"/individuals/{ind['id']}/card").text
        assert f"max_parameters: {budget}" in card and "derived" in card
        p = api.client.post(f"/individuals/{ind['id']}/predictions", files={"file": ("x.npz", buf.getvalue())})
        assert p.status_code == 200 and len(p.json()["predictions"]) == 4
        assert "**Size.**" in card and "id=\"sizing\"" in api.client.get(f"/ui/individuals/{ind['id']}").text
        sizes.append(ind["parameters"])
    assert sizes == sorted(sizes) and sizes[0] < sizes[1] < sizes[2]  # three different sizes, as asked
    plain = api.client.post("/individuals", files=files, data={"init": "learngene", "epochs": "2"})
    api.run_jobs()
    default = api.client.get(f"/jobs/{plain.json()['id']}").json()["result"]["individual_id"]
    assert api.client.get(f"/individuals/{default}").json()["sizing"] is None  # no budget: today's model


def test_learngene_storage_view_and_size_curve(grown, make_task):
    api = grown
    lg = api.client.get("/learngenes").json()["items"][0]
    detail = api.client.get(f"/learngenes/{lg['id']}").json()
    storage = detail["storage"]
    assert storage["learngene_parameters"] == lg["parameters"] and len(storage["sizes"]) == 5
    assert storage["one_model_per_size_parameters"] == sum(s["parameters"] for s in storage["sizes"])
    assert all(s["parameters"] <= s["max_parameters"] for s in storage["sizes"])
    assert storage["ratio"] == pytest.approx(storage["one_model_per_size_parameters"] / lg["parameters"])
    empty = api.client.get(f"/learngenes/{lg['id']}/sizes.png")
    assert empty.status_code == 200 and empty.headers["content-type"] == "image/png"
    support, query = make_task(["p", "q", "r"], 4, seed=7), make_task(["p", "q", "r"], 3, seed=8)
    for budget in ("4000", "20000"):
        r = api.client.post("/individuals", files={"file": ("s.npz", support), "eval_file": ("q.npz", query)},
                            data={"max_parameters": budget, "init": "learngene", "epochs": "1"})
        assert r.status_code == 202, r.text
    api.run_jobs()
    curve = api.client.get(f"/learngenes/{lg['id']}/sizes.png")
    assert curve.status_code == 200 and curve.content != empty.content
    assert curve.headers["etag"] != empty.headers["etag"]  # new individuals, new image
    page = api.client.get(f"/ui/learngenes/{lg['id']}").text
    assert f"/learngenes/{lg['id']}/sizes.png" in page and 'id="storage"' in page
    newest = api.client.get("/individuals").json()["items"][0]
    ui = api.client.get(f"/ui/individuals/{newest['id']}").text
    assert 'id="sizing"' in ui and any(kind in ui for kind in ("shrunk-", "widened", "inherited"))


def test_size_curve_figure_has_labelled_axes_and_one_line_per_init():
    from service.plots import size_curve_figure

    fig = size_curve_figure({"learngene": [(100, 0.5), (400, 0.7), (400, 0.8)], "scratch": [(100, 0.3)]})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "parameters" and ax.get_ylabel() == "accuracy"
    assert sorted(line.get_label() for line in ax.get_lines()) == ["learngene", "scratch"]
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([0.5, 0.75])
