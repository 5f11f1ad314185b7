"""A newcomer's mistakes get useful answers (issue 14): unknown fields, duplicate uploads, converted images, files
sent as text, keys without their scheme; and what a user can clean up (DELETE /individuals/{id})."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from service.models import Individual, Job, Task

from .conftest import API_KEY


@pytest.fixture
def grown(api, make_task):
    """One task learned (learngene 1 of collective `default`, 16×16 grey), its bytes kept for re-uploads."""
    api.task_bytes = make_task(["a", "b", "c"], 8, seed=0)
    api.post_task(api.task_bytes, name="first")
    api.run_jobs()
    return api


def individual(api, make_task, **form) -> int:
    r = api.client.post("/individuals", data={"epochs": "2", **form},
                        files={"file": ("support.npz", make_task(["p", "q"], 4, seed=5))})
    assert r.status_code == 202, r.text
    api.run_jobs()
    job = api.client.get(f"/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job["result"]["individual_id"]


def count(api, model) -> int:
    with api.ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


# ------------------------------------------------------------------------------------------- unknown fields


def test_a_misspelt_form_field_is_refused_naming_the_closest(grown, make_task):
    jobs = count(grown, Job)
    r = grown.client.post("/individuals", data={"learngene": "99"},
                          files={"file": ("support.npz", make_task(["p", "q"], 4))})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "/problems/unknown-field"
    assert "`learngene`" in body["detail"] and "did you mean `learngene_id`?" in body["detail"]
    assert body["errors"][0]["loc"] == ["form", "learngene"]
    assert count(grown, Job) == jobs and grown.sent == []  # nothing changed


def test_a_misspelt_query_parameter_is_refused(grown):
    r = grown.client.get("/tasks", params={"colective": "default"})
    assert r.status_code == 422 and "did you mean `collective`?" in r.json()["detail"]
    r = grown.client.get("/learngenes", params={"max_params": "10"})
    assert r.status_code == 422 and "did you mean `max_parameters`?" in r.json()["detail"]
    assert grown.client.get("/tasks", params={"collective": "default", "limit": "1"}).status_code == 200


# ------------------------------------------------------------------------------------------- duplicate tasks


def test_the_same_task_twice_is_a_conflict_naming_the_first(grown):
    tasks = count(grown, Task)
    r = grown.client.post("/tasks", files={"file": ("again.npz", grown.task_bytes)})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "/problems/duplicate-task" and body["task_id"] == 1
    assert "task 1 ('first'" in body["detail"] and "allow_duplicate=true" in body["detail"]
    assert count(grown, Task) == tasks and grown.sent == []
    # Another collective may learn it; this one too when the request says so.
    assert grown.client.post("/tasks", files={"file": ("t.npz", grown.task_bytes)},
                             data={"collective": "other"}).status_code == 202
    r = grown.client.post("/tasks", files={"file": ("t.npz", grown.task_bytes)}, data={"allow_duplicate": "true"})
    assert r.status_code == 202 and count(grown, Task) == tasks + 2


# ------------------------------------------------------------------------------------------- conversion


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_predictions_say_how_images_were_converted(grown, make_task):
    ind = individual(grown, make_task)
    model = grown.client.get(f"/individuals/{ind}").json()
    side, channels = model["size"], model["channels"]
    url = f"/individuals/{ind}/predictions"
    same = grown.client.post(url, files={"file": ("a.png", _png(np.zeros((side, side), np.uint8)))})
    assert same.status_code == 200 and same.json()["conversion"] is None
    rgb = grown.client.post(url, files={"file": ("b.png", _png(np.zeros((28, 28, 3), np.uint8)))})
    assert rgb.status_code == 200
    assert rgb.json()["conversion"] == {"from": [28, 28, 3], "to": [side, side, channels]}
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((2, 20, 24), np.uint8))
    many = grown.client.post(url, files={"file": ("x.npz", buf.getvalue())}).json()
    assert len(many["predictions"]) == 2 and many["conversion"] == {"from": [20, 24, 1], "to": [side, side, 1]}


# ------------------------------------------------------------------------------------------- error messages


def test_a_text_file_for_predictions_names_the_file_and_the_formats(grown, make_task):
    ind = individual(grown, make_task)
    r = grown.client.post(f"/individuals/{ind}/predictions", files={"file": ("notes.txt", b"hello, model")})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "'notes.txt'" in detail and "PNG, JPEG" in detail and ".npz" in detail
    assert "BytesIO" not in detail


def test_a_file_field_sent_as_text_says_how_to_send_the_file(grown):
    r = grown.client.post("/tasks", data={"file": "task1.npz"})  # curl -F file=task1.npz (no @)
    assert r.status_code == 422
    assert "field `file` must be a file upload" in r.json()["detail"]
    assert "-F file=@task1.npz" in r.json()["detail"]


def test_a_key_without_bearer_says_the_scheme_is_missing(grown, make_task):
    r = grown.client.post("/tasks", files={"file": ("t.npz", make_task(["x", "y"], 4))},
                          headers={"Authorization": API_KEY})
    assert r.status_code == 401
    assert "no `Bearer` scheme" in r.json()["detail"] and "Authorization: Bearer <key>" in r.json()["detail"]
    assert API_KEY not in r.text
    r = grown.client.post("/tasks", files={"file": ("t.npz", make_task(["x", "y"], 4))},
                          headers={"Authorization": ""})
    assert r.status_code == 401 and "needs an API key" in r.json()["detail"]


# ------------------------------------------------------------------------------------------- delete


def test_delete_an_individual_then_404_and_its_job_still_answers(grown, make_task):
    ind = individual(grown, make_task)
    row = grown.client.get(f"/individuals/{ind}").json()
    store = grown.ctx.store
    assert store.path(row["sha256"]).exists()
    job_id = grown.client.get("/jobs", params={"kind": "individual"}).json()["items"][0]["id"]
    r = grown.client.delete(f"/individuals/{ind}")
    assert r.status_code == 204 and r.content == b""
    assert grown.client.get(f"/individuals/{ind}").status_code == 404
    assert grown.client.get(f"/individuals/{ind}/weights").status_code == 404
    assert grown.client.delete(f"/individuals/{ind}").status_code == 404
    assert not store.path(row["sha256"]).exists()  # nothing else used those weights
    job = grown.client.get(f"/jobs/{job_id}")
    assert job.status_code == 200 and job.json()["result"]["individual_id"] == ind
    assert grown.client.get(f"/ui/jobs/{job_id}").status_code == 200
    assert grown.client.get(f"/ui/individuals/{ind}").status_code == 404
    assert grown.client.get("/learngenes/1").status_code == 200  # the learngene stays


def test_delete_keeps_weights_another_row_uses_and_needs_a_write_key(grown, make_task):
    from service.auth import create_key

    ind = individual(grown, make_task)
    with grown.ctx.sessions() as s:  # a second row with the same weights (as two identical trainings would make)
        original = s.get(Individual, ind)
        twin = Individual(**{c.name: getattr(original, c.name) for c in Individual.__table__.columns if c.name != "id"})
        s.add(twin)
        read_token, _ = create_key(s, "read", name="reader")
        s.commit()
        digest, twin_id = original.weights_sha256, twin.id
    r = grown.client.delete(f"/individuals/{ind}", headers={"Authorization": f"Bearer {read_token}"})
    assert r.status_code == 403 and grown.client.get(f"/individuals/{ind}").status_code == 200
    assert grown.client.delete(f"/individuals/{ind}").status_code == 204
    assert grown.ctx.store.path(digest).exists()
    assert grown.client.get(f"/individuals/{twin_id}/weights").status_code == 200


# ------------------------------------------------------------------------------------------- scratch


def test_scratch_individuals_are_not_built_from_the_learngene(grown, make_task):
    built = individual(grown, make_task)
    scratch = individual(grown, make_task, init="scratch")
    body = grown.client.get(f"/individuals/{scratch}").json()
    assert body["learngene_id"] is None and body["based_on_collective_version"] == {"collective": "default",
                                                                                     "number": 1}
    html = grown.client.get("/ui/learngenes/1").text
    offspring = html.split("Individuals built from it")[1]
    assert f'href="/ui/individuals/{built}"' in offspring and f'href="/ui/individuals/{scratch}"' not in offspring
    # The fair comparison (same support set) still pairs them on the individual's page.
    page = grown.client.get(f"/ui/individuals/{scratch}").text
    assert f'href="/ui/individuals/{built}"' in page.split("Trained on the same support set")[1]


# ------------------------------------------------------------------------------------------- docs


def test_the_docs_list_every_problem_type_the_code_raises():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    raised = {m for f in (root / "service").rglob("*.py")
              for m in re.findall(r'type="([a-z-]+)"', f.read_text(encoding="utf-8"))} - {"direct", "submit"}
    documented = set(re.findall(r"`/problems/([a-z-]+)`", (root / "docs" / "service.md").read_text(encoding="utf-8")))
    assert raised and raised <= documented, f"not in docs/service.md: {sorted(raised - documented)}"


def test_the_curl_section_activates_the_environment_and_its_examples_can_work():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text(encoding="utf-8")
    curl = text.split("## The whole flow with curl")[1].split("\n## ")[0]
    assert "source .venv/bin/activate" in curl.split("```")[0]  # said before the first snippet
    scratch = next(line for line in curl.splitlines() if "init=scratch" in line)
    first = next(line for line in curl.splitlines() if "eval_file=@query.npz" in line and "scratch" not in line)
    assert "eval_file=@query.npz" in scratch and "seed=0" in scratch and "seed=0" in first  # comparable
    cancel = curl.split("5. Jobs can be cancelled")[1].split("# 6.")[0]
    assert "epochs=300" in cancel and "/jobs/$JOB/cancel" in cancel and "/jobs/5/cancel" not in curl


def test_a_query_parameter_given_twice_or_loosely_written_is_refused(grown):
    r = grown.client.get("/learngenes?method=a&method=gradient")
    assert r.status_code == 422 and "`method` is given 2 times" in r.json()["detail"]
    r = grown.client.get("/tasks", params={"limit": "5.0"})
    assert r.status_code == 422 and "`limit` must be an integer written in digits" in r.json()["detail"]
    assert grown.client.get("/tasks", params={"limit": "5"}).status_code == 200


def test_a_misspelt_json_member_is_refused_naming_the_closest(api):
    r = api.client.post("/collectives", json={"name": "rgb", "channels": 3, "size": 32, "presets": "small"})
    assert r.status_code == 422 and "unknown body field `presets`; did you mean `preset`?" in r.json()["detail"]
    assert api.client.get("/collectives/rgb").status_code == 404
    assert api.client.post("/collectives", json={"name": "rgb", "channels": 3, "size": 32}).status_code == 201
