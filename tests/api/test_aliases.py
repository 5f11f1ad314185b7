"""Learngene aliases: set, read, move (one transaction, recorded), delete; individuals ordered by alias; the
catalog lists them; bad names and ids answer problem+json and change nothing."""
from __future__ import annotations

from sqlalchemy import select

from service.models import LearngeneAliasEvent


def _two_learngenes(api, make_task) -> None:
    api.post_task(make_task(["a", "b", "c"], 6, seed=0))
    api.post_task(make_task(["c", "d"], 6, seed=1))
    api.run_jobs()


def test_set_move_read_and_delete_an_alias(api, make_task):
    _two_learngenes(api, make_task)
    r = api.client.put("/learngenes/aliases/champion", json={"learngene_id": 1})
    assert r.status_code == 200 and r.json()["learngene_id"] == 1
    assert api.client.get("/learngenes/aliases/champion").json()["learngene_id"] == 1
    assert api.client.get("/learngenes/1").json()["aliases"] == ["champion"]

    moved = api.client.put("/learngenes/aliases/champion", json={"learngene_id": 2})
    assert moved.status_code == 200 and moved.json()["learngene_id"] == 2
    catalog = {lg["id"]: lg["aliases"] for lg in api.client.get("/learngenes").json()["items"]}
    assert catalog == {2: ["champion"], 1: []}
    assert [a["name"] for a in api.client.get("/learngenes/aliases").json()] == ["champion"]

    assert api.client.delete("/learngenes/aliases/champion").status_code == 204
    gone = api.client.get("/learngenes/aliases/champion")
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
    with api.ctx.sessions() as s:
        events = s.execute(select(LearngeneAliasEvent.from_learngene_id, LearngeneAliasEvent.to_learngene_id,
                                  LearngeneAliasEvent.api_key_id).order_by(LearngeneAliasEvent.id)).all()
    key_id = events[0][2]
    assert key_id is not None  # the key that moved it is recorded
    assert [(a, b) for a, b, _ in events] == [(None, 1), (1, 2), (2, None)]


def test_an_individual_ordered_by_alias_uses_its_learngene(api, make_task):
    _two_learngenes(api, make_task)
    api.client.put("/learngenes/aliases/champion", json={"learngene_id": 1})
    support = make_task(["p", "q"], 4, seed=3)
    r = api.client.post("/individuals", files={"file": ("s.npz", support)},
                        data={"learngene_alias": "champion", "epochs": "1"})
    assert r.status_code == 202, r.text
    api.run_jobs()
    job = api.client.get(f"/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded" and job["result"]["learngene_id"] == 1  # not the newest (2)

    unknown = api.client.post("/individuals", files={"file": ("s.npz", support)}, data={"learngene_alias": "nope"})
    detail = unknown.json()["detail"]
    assert unknown.status_code == 404 and "'nope'" in detail and "champion" in detail
    clash = api.client.post("/individuals", files={"file": ("s.npz", support)},
                            data={"learngene_alias": "champion", "learngene_id": "2"})
    assert clash.status_code == 422 and "disagree" in clash.json()["detail"]
    assert api.sent == []  # nothing was queued by the refused orders


def test_bad_alias_requests_change_nothing(api, make_task):
    _two_learngenes(api, make_task)
    assert api.client.put("/learngenes/aliases/champion", json={"learngene_id": 99}).status_code == 404
    assert api.client.put("/learngenes/aliases/3rd", json={"learngene_id": 1}).status_code == 422  # not a letter first
    assert api.client.put("/learngenes/aliases/champion", json={}).status_code == 422
    assert api.client.put("/learngenes/aliases/champion", json={"learngene_id": True}).status_code == 422
    assert api.client.put("/learngenes/aliases/champion", json={"learngene_id": 1, "x": 2}).status_code == 422
    anonymous = api.client.put("/learngenes/aliases/champion", json={"learngene_id": 1},
                               headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert api.client.delete("/learngenes/aliases/champion").status_code == 404
    assert api.client.get("/learngenes/aliases").json() == []
    with api.ctx.sessions() as s:
        assert s.scalars(select(LearngeneAliasEvent)).all() == []


def test_concurrent_moves_on_postgresql_keep_one_row_and_a_true_history(pg_url, tmp_path, make_task, settings_for):
    """Eight PUTs of one new alias at once, to two learngenes: no error, one row, and the recorded moves chain
    (each event's `from` is the previous event's `to`)."""
    import threading

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.migrate import upgrade
    from workers.context import WorkerContext
    from workers.grow import run_task_job

    settings = settings_for(tmp_path, database_url=pg_url)
    upgrade(settings)
    sent = []
    app = create_app(settings, enqueue=lambda job: sent.append(job.id))
    ctx = WorkerContext.from_settings(settings, name="test@pg")
    with TestClient(app) as client:
        for seed in (0, 1):
            r = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4, seed=seed))},
                            data={"epochs": "1"})
            assert r.status_code == 202
        for job_id in sent:
            run_task_job(ctx, job_id, worker="test@pg")
        codes, barrier = [], threading.Barrier(8)

        def put(i: int) -> None:
            barrier.wait()
            codes.append(client.put("/learngenes/aliases/champion", json={"learngene_id": 1 + i % 2}).status_code)

        threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 8
        final = client.get("/learngenes/aliases/champion").json()["learngene_id"]
    with ctx.sessions() as s:
        events = s.execute(select(LearngeneAliasEvent.from_learngene_id, LearngeneAliasEvent.to_learngene_id)
                           .order_by(LearngeneAliasEvent.id)).all()
    assert events[0][0] is None and events[-1][1] == final
    assert all(later[0] == earlier[1] for earlier, later in zip(events, events[1:]))
