"""A small registry for the plot and dashboard tests: three tasks (three versions and learngenes of
`default`) and one individual with an eval set, run in-process by the `api` fixture's queue.

    data = populate(api, make_task)      # data.learngene_ids (oldest first), data.individual_id, ...
"""
from __future__ import annotations

from dataclasses import dataclass

TASK_NAMES = ["pets", "deer", "<script>alert('x')</script>"]  # the last checks HTML escaping
TASK_CLASSES = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "a"]]
TARGET = ["p", "q", "r"]


@dataclass
class Registry:
    task_ids: list[int]
    job_ids: list[int]
    learngene_ids: list[int]
    individual_id: int
    individual_job_id: int


def populate(api, make_task) -> Registry:
    jobs = [api.post_task(make_task(classes, 6, seed=i), name=name)["id"]
            for i, (classes, name) in enumerate(zip(TASK_CLASSES, TASK_NAMES))]
    api.run_jobs()
    results = [api.client.get(f"/jobs/{j}").json()["result"] for j in jobs]
    r = api.client.post("/individuals", data={"epochs": "3"},
                        files={"file": ("support.npz", make_task(TARGET, 3, seed=10)),
                               "eval_file": ("query.npz", make_task(TARGET, 3, seed=11))})
    assert r.status_code == 202, r.text
    api.run_jobs()
    individual = api.client.get(f"/jobs/{r.json()['id']}").json()
    assert individual["status"] == "succeeded", individual
    return Registry(task_ids=[x["task_id"] for x in results], job_ids=jobs,
                    learngene_ids=[x["learngene_id"] for x in results],
                    individual_id=individual["result"]["individual_id"], individual_job_id=r.json()["id"])
