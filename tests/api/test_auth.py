"""API keys (service/auth.py): who may change what, 401/403 as problem+json, keys hashed, the CLI, no leaks."""
from __future__ import annotations

import hashlib
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service import cli
from service.auth import create_key
from service.models import ApiKey, Job, Task

from .conftest import API_KEY


def bare(api) -> TestClient:
    """A client of the same app that sends no key."""
    return TestClient(api.client.app, raise_server_exceptions=False)


def new_key(api, scope: str) -> str:
    with api.ctx.sessions() as s:
        token, _ = create_key(s, scope, name=f"t-{scope}")
        s.commit()
    return token


def assert_problem(r, status: int, challenge: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith(challenge)
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def test_mutating_endpoints_need_a_key_and_leave_nothing_behind(api, make_task):
    client = bare(api)
    data = make_task(["a", "b"], 4)
    calls = [
        ("/tasks", {"files": {"file": ("t.npz", data)}, "data": {"epochs": "1"}}),
        ("/individuals", {"files": {"file": ("s.npz", data)}}),
        ("/collectives", {"json": {"name": "c2", "channels": 1, "size": 16}}),
        ("/jobs/1/cancel", {}),
        ("/individuals/1/predictions", {"files": {"file": ("x.npz", data)}}),
    ]
    for path, kw in calls:
        body = assert_problem(client.post(path, **kw), 401, 'Bearer realm="learngene"')
        assert body["type"] == "/problems/unauthorized" and "Authorization: Bearer" in body["detail"], path
        wrong = client.post(path, headers={"Authorization": "Bearer lgk_not-a-key"}, **kw)
        assert "unknown or revoked" in assert_problem(wrong, 401, "Bearer")["detail"], path
    with api.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
        assert s.scalar(select(func.count()).select_from(Task)) == 0
    assert api.sent == []
    # Reads stay open.
    for path in ("/healthz", "/jobs", "/tasks", "/learngenes", "/individuals", "/collectives"):
        assert client.get(path).status_code == 200, path


def test_a_read_key_may_predict_but_not_write(api, make_task):
    client = bare(api)
    auth = {"Authorization": f"Bearer {new_key(api, 'read')}"}
    r = client.post("/tasks", headers=auth, files={"file": ("t.npz", make_task(["a", "b"], 4))}, data={"epochs": "1"})
    body = assert_problem(r, 403, 'Bearer realm="learngene", error="insufficient_scope"')
    assert body["type"] == "/problems/insufficient-scope" and "'write'" in body["detail"]
    assert assert_problem(client.post("/jobs/1/cancel", headers=auth), 403, "Bearer")
    # Predictions are a read: past the key check, the unknown individual is the answer.
    assert client.post("/individuals/99/predictions", headers=auth,
                       files={"file": ("x.npz", make_task(["a"], 2))}).status_code == 404
    # The write key of the fixture gets through.
    job = api.post_task(make_task(["a", "b"], 4))
    assert api.client.post(f"/jobs/{job['id']}/cancel").status_code == 202


def test_keys_are_stored_hashed_and_a_revoked_key_is_refused(api, make_task):
    token = new_key(api, "write")
    with api.ctx.sessions() as s:
        rows = s.scalars(select(ApiKey)).all()
        hashes = {r.key_hash for r in rows}
        assert hashlib.sha256(token.encode()).hexdigest() in hashes
        assert hashlib.sha256(API_KEY.encode()).hexdigest() in hashes
        assert all(token not in str(getattr(r, c)) for r in rows for c in ("name", "key_hash", "scope"))
        row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hashlib.sha256(token.encode()).hexdigest()))
        key_id = row.id
    client = bare(api)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post("/collectives", headers=auth, json={"name": "k1", "channels": 1, "size": 16}).status_code == 201
    with api.ctx.sessions() as s:
        s.get(ApiKey, key_id).revoked_at = s.get(ApiKey, key_id).created_at
        s.commit()
    assert_problem(client.post("/collectives", headers=auth, json={"name": "k2", "channels": 1, "size": 16}),
                   401, "Bearer")


def test_cli_creates_lists_and_revokes_keys_and_no_key_reaches_a_log(api, make_task, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    api.registry_env(monkeypatch)
    monkeypatch.setenv("LEARNGENE_EXTRACT_METHOD", "gradient")
    env_key = "lgk_from-the-environment"
    monkeypatch.setenv("LEARNGENE_API_KEY", env_key)

    def cli_run(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as e:
            cli.main(list(argv))
        return e.value.code, capsys.readouterr().out

    code, out = cli_run("keys", "create", "--scope", "write", "--name", "ci")
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("lgk_") and len(token) > 40
    code, out = cli_run("keys", "list")
    assert code == 0 and " ci" in out and "write" in out and token not in out
    key_id = next(int(line.split()[0]) for line in out.splitlines() if line.rstrip().endswith(" ci"))

    cli.register_env_key(cli.Settings())  # what `run` and `api` do at start with LEARNGENE_API_KEY
    client = bare(api)
    for t, name in ((token, "c-cli"), (env_key, "c-env")):
        r = client.post("/collectives", headers={"Authorization": f"Bearer {t}"},
                        json={"name": name, "channels": 1, "size": 16})
        assert r.status_code == 201, r.text
    code, out = cli_run("keys", "revoke", str(key_id))
    assert code == 0 and f"revoked API key {key_id}" in out
    assert cli_run("keys", "revoke", "9999")[0] == 1
    assert bare(api).post("/collectives", headers={"Authorization": f"Bearer {token}"},
                          json={"name": "c-after", "channels": 1, "size": 16}).status_code == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the requests and the CLI did log
    for secret in (token, env_key, API_KEY):
        assert secret not in logged


def test_auth_off_lets_anyone_post(settings_for, tmp_path, make_task):
    from service.app import create_app
    from service.migrate import upgrade

    settings = settings_for(tmp_path, auth=False)
    upgrade(settings)
    sent: list[int] = []
    with TestClient(create_app(settings, enqueue=lambda job: sent.append(job.id)),
                    raise_server_exceptions=False) as client:
        r = client.post("/tasks", files={"file": ("t.npz", make_task(["a", "b"], 4))}, data={"epochs": "1"})
        assert r.status_code == 202 and sent == [r.json()["id"]]
