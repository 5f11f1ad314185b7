"""The `learngene` command line against the in-process app: each command, --json, --wait, and the one-line
errors (exit code 1)."""
from __future__ import annotations

import io
import json
import os
import threading

import numpy as np
import pytest
from safetensors.torch import load as load_safetensors
from typer.testing import CliRunner

from learngene_client import Client, cli

from .conftest import API_KEY


@pytest.fixture
def learngene(api, monkeypatch):
    """Run `learngene ARGS...` against the `api` app; the key is given per command, as a user would."""
    del api.client.headers["authorization"]
    monkeypatch.setattr(cli, "client_factory", lambda url, key: Client(api_key=key or "", http=api.client))
    for name in ("LEARNGENE_URL", "LEARNGENE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli.app, [str(a) for a in args])

    return invoke


@pytest.fixture
def worker(api):
    """Runs every job the API sends, as it is sent (commands with --wait need a worker)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if api.sent:
                api.run_jobs()
            stop.wait(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(60)


@pytest.fixture
def files(tmp_path, make_task):
    """Task and support files on disk, as a user has them."""
    paths = {}
    for name, classes, per_class, seed in (("task1", ["a", "b", "c"], 6, 0), ("task2", ["c", "d"], 6, 1),
                                           ("support", ["p", "q"], 4, 2), ("query", ["p", "q"], 3, 3)):
        paths[name] = tmp_path / f"{name}.npz"
        paths[name].write_bytes(make_task(classes, per_class, seed=seed))
    buf = io.BytesIO()
    np.savez(buf, x=np.load(paths["query"])["x"])
    paths["images"] = tmp_path / "images.npz"
    paths["images"].write_bytes(buf.getvalue())
    paths["bad"] = tmp_path / "bad.npz"
    paths["bad"].write_bytes(b"not a dataset")
    return paths


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_tasks_add_wait_then_list_and_show(learngene, worker, files):
    added = learngene("--key", API_KEY, "tasks", "add", files["task1"], "--name", "letters", "--epochs", 2, "--wait")
    assert added.exit_code == 0, added.output
    # Not a terminal: one plain line per progress change, then the outcome.
    assert "job 1 running: train epoch 1/2 loss " in added.stdout and "job 1 succeeded (100%)" in added.stdout
    assert added.stdout.strip().splitlines()[-1].startswith("succeeded: collective default v1, learngene 1 (layers [")
    second = learngene("--key", API_KEY, "tasks", "add", files["task2"], "--epochs", 1)
    assert second.exit_code == 0 and "job 2 queued (task); follow it with: learngene jobs watch 2" in second.stdout
    watched = learngene("jobs", "watch", 2)
    assert watched.exit_code == 0 and "succeeded: collective default v2, learngene 2" in watched.stdout

    listed = learngene("tasks", "list")
    assert listed.exit_code == 0
    assert "letters" in listed.stdout and "default@1" in listed.stdout and "task2.npz" in listed.stdout
    shown = learngene("tasks", "show", 2)
    assert shown.exit_code == 0 and "c 6, d 6" in shown.stdout and "new classes" in shown.stdout
    raw = json.loads(learngene("--json", "tasks", "show", 2).stdout)
    assert raw["new_classes"] == ["d"] and raw["collective_version"] == 2
    page = json.loads(learngene("--json", "tasks", "list", "--limit", 1).stdout)
    assert [t["id"] for t in page["items"]] == [2] and page["next_cursor"]


def test_learngenes_list_with_filters_and_show(learngene, worker, files):
    for name in ("task1", "task2"):
        assert learngene("--key", API_KEY, "tasks", "add", files[name], "--epochs", 1, "--wait").exit_code == 0
    listed = learngene("learngenes", "list")
    assert listed.exit_code == 0 and "default@2" in listed.stdout and "default@1" in listed.stdout
    only_first = learngene("learngenes", "list", "--version", 1, "--collective", "default", "--method", "gradient")
    assert "default@1" in only_first.stdout and "default@2" not in only_first.stdout
    assert json.loads(learngene("--json", "learngenes", "list", "--max-parameters", 0).stdout)["items"] == []
    shown = learngene("learngenes", "show", 2)
    assert shown.exit_code == 0 and "parent v1" in shown.stdout and "default@2" in shown.stdout
    assert json.loads(learngene("--json", "learngenes", "show", 2).stdout)["lineage"]["tasks_seen"] == 2
    assert "none (chosen from gradient statistics alone)" in shown.stdout  # the API tests extract by gradient

    saved = learngene("learngenes", "download", 2, "-o", files["task1"].with_name("lg2.safetensors"))
    assert saved.exit_code == 0 and "saved " in saved.stdout
    tensors = load_safetensors(files["task1"].with_name("lg2.safetensors").read_bytes())
    assert tensors and not list(files["task1"].parent.glob("*.part"))  # whole file, no partial left


def test_individuals_create_wait_list_show_and_predict(learngene, worker, files):
    assert learngene("--key", API_KEY, "tasks", "add", files["task1"], "--epochs", 1, "--wait").exit_code == 0
    made = learngene("--key", API_KEY, "individuals", "create", files["support"], "--eval", files["query"],
                     "--epochs", 3, "--seed", 1, "--wait")
    assert made.exit_code == 0, made.output
    assert made.stdout.strip().splitlines()[-1].startswith("succeeded: individual 1, eval accuracy ")
    scratch = learngene("--key", API_KEY, "--json", "individuals", "create", files["support"], "--init", "scratch",
                        "--epochs", 2, "--wait")
    assert scratch.exit_code == 0 and json.loads(scratch.stdout)["result"]["individual_id"] == 2

    listed = learngene("individuals", "list")
    assert listed.exit_code == 0 and "scratch" in listed.stdout and "p, q" in listed.stdout
    built = json.loads(learngene("--json", "individuals", "list", "--learngene", 1).stdout)["items"]
    assert [i["id"] for i in built] == [1]  # the scratch model inherits nothing from learngene 1
    shown = learngene("individuals", "show", 1)
    assert "p (4 shots), q (4 shots)" in shown.stdout and "eval accuracy" in shown.stdout

    predicted = learngene("--key", API_KEY, "predict", 1, files["images"])
    assert predicted.exit_code == 0 and "label" in predicted.stdout
    labels = [p["label"] for p in json.loads(learngene("--key", API_KEY, "--json", "predict", 1,
                                                       files["images"]).stdout)["predictions"]]
    assert len(labels) == 6 and set(labels) <= {"p", "q"}

    downloaded = learngene("individuals", "download", 1, "-o", files["images"].with_name("ind1.safetensors"))
    assert downloaded.exit_code == 0, downloaded.output
    weights = load_safetensors(files["images"].with_name("ind1.safetensors").read_bytes())
    assert weights["classifier.weight"].shape[0] == 2  # two classes, p and q
    assert _one_error_line(learngene("individuals", "download", 99)).startswith("error: 404 Not Found: ")


def test_jobs_list_cancel_and_watch_a_cancelled_job(learngene, files):
    assert learngene("--key", API_KEY, "tasks", "add", files["task1"]).exit_code == 0  # no worker: stays queued
    listed = learngene("jobs", "list", "--status", "queued")
    assert listed.exit_code == 0 and "queued" in listed.stdout and "task" in listed.stdout
    cancelled = learngene("--key", API_KEY, "jobs", "cancel", 1)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == "job 1: cancelled"
    watched = learngene("jobs", "watch", 1)
    assert watched.exit_code == 1 and watched.stderr.strip() == "cancelled"  # cancelled while queued: no message
    assert json.loads(learngene("--json", "jobs", "list").stdout)["items"][0]["status"] == "cancelled"
    again = _one_error_line(learngene("--key", API_KEY, "jobs", "cancel", 1))
    assert again.startswith("error: 409 Job already finished: ")


def test_errors_are_one_line_on_stderr_and_exit_1(learngene, files, kit, monkeypatch):
    assert _one_error_line(learngene("tasks", "add", files["task1"])).startswith("error: 401 Unauthorized: ")
    bad = _one_error_line(learngene("--key", API_KEY, "tasks", "add", files["bad"]))
    assert bad.startswith("error: 422 Invalid dataset: ")
    missing = _one_error_line(learngene("--key", API_KEY, "tasks", "add", files["task1"].with_name("nope.npz")))
    assert missing.startswith("error: No such file or directory: ") and missing.endswith("nope.npz")
    assert _one_error_line(learngene("jobs", "watch", 99)) == "error: 404 Not Found: job 99 does not exist"
    assert _one_error_line(learngene("individuals", "show", 5)) == "error: 404 Not Found: individual 5 does not exist"
    monkeypatch.setattr(cli, "client_factory", lambda url, key: Client(url, key))  # the real one
    url = f"http://127.0.0.1:{kit.free_port()}"
    assert _one_error_line(learngene("--url", url, "learngenes", "list")).startswith(f"error: cannot reach {url}: ")


def test_keys_create_list_revoke_on_the_local_registry(api, learngene, files, monkeypatch):
    api.registry_env(monkeypatch)  # the registry the app uses
    created = learngene("keys", "create", "--scope", "read", "--name", "dashboard")
    assert created.exit_code == 0 and "scope read, name 'dashboard'" in created.stdout
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("lgk_")
    refused = _one_error_line(learngene("--key", token, "tasks", "add", files["task1"]))
    assert refused.startswith("error: 403 ")  # a read key cannot upload
    listed = learngene("keys", "list")
    assert "dashboard" in listed.stdout and "read" in listed.stdout and token not in listed.stdout
    key_id = created.stdout.split()[3]
    assert learngene("keys", "revoke", key_id).stdout.strip() == f"revoked API key {key_id}"
    assert "revoked" in learngene("keys", "list").stdout
    assert _one_error_line(learngene("--key", token, "predict", 1, files["images"])).startswith("error: 401 ")
    refused = learngene("keys", "revoke", 999)
    assert refused.exit_code == 1 and refused.stderr.strip().splitlines()[-1] == "error: no API key 999"
    # Each command that touches the registry says which one it used.
    used = (f"registry: {api.settings.database_url.split('://')[0]}" if api.settings.database_url
            else f"registry: {api.settings.data_dir.resolve() / 'registry.sqlite3'} ")
    assert refused.stderr.startswith(used)


def test_serve_runs_the_embedded_service_with_the_given_port_and_data_dir(monkeypatch, tmp_path):
    import service.cli

    calls = []
    monkeypatch.setattr(service.cli, "serve", lambda settings: calls.append((settings, dict(os.environ))))
    # The command sets these in os.environ (for the worker process); monkeypatch puts the old values back.
    monkeypatch.setenv("LEARNGENE_PORT", "8000")
    monkeypatch.setenv("LEARNGENE_DATA_DIR", "var")
    result = CliRunner().invoke(cli.app, ["serve", "--port", "8765", "--data-dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    (settings, env), = calls
    assert settings.port == 8765 and settings.data_dir == tmp_path / "demo"
    assert env["LEARNGENE_PORT"] == "8765" and env["LEARNGENE_DATA_DIR"] == str(tmp_path / "demo")


def test_collectives_create_list_and_show(learngene, worker, files):
    created = learngene("--key", API_KEY, "collectives", "create", "letters", "--channels", 1, "--size", 16,
                        "--preset", "tiny")
    assert created.exit_code == 0 and "created collective letters (1×16×16, preset tiny)" in created.stdout
    assert learngene("--key", API_KEY, "tasks", "add", files["task1"], "--collective", "letters",
                     "--epochs", 1, "--wait").exit_code == 0
    listed = learngene("collectives", "list")
    assert listed.exit_code == 0 and "letters" in listed.stdout and "v1" in listed.stdout
    shown = learngene("collectives", "show", "letters")
    assert shown.exit_code == 0, shown.output
    version_row = next(line for line in shown.stdout.splitlines() if line.lstrip().startswith("v1"))
    assert version_row.split()[3] == "3"  # 3 classes
    as_json = json.loads(learngene("--json", "collectives", "show", "letters").stdout)
    assert as_json["head"] == 1 and as_json["versions"][0]["label_space"] == ["a", "b", "c"]
    assert "already exists" in _one_error_line(
        learngene("--key", API_KEY, "collectives", "create", "letters", "--channels", 1, "--size", 16)).lower()


def test_json_after_the_command_jobs_show_and_full_width_rows(learngene, worker, files):
    assert learngene("--key", API_KEY, "tasks", "add", files["task1"], "--name", "x" * 150, "--epochs", 1,
                     "--wait").exit_code == 0
    after = learngene("jobs", "list", "--json")
    assert after.exit_code == 0 and json.loads(after.stdout)["items"][0]["status"] == "succeeded"
    shown = learngene("jobs", "show", 1)
    assert shown.exit_code == 0 and "succeeded" in shown.stdout and "learngene_id 1" in shown.stdout
    assert json.loads(learngene("jobs", "show", 1, "--json").stdout)["kind"] == "task"
    # Off a terminal a row is one line however long: grep-able.
    rows = learngene("tasks", "list").stdout.splitlines()
    assert len(rows) == 2 and "x" * 150 in rows[1] and rows[1].split()[0] == "1"


def test_help_shows_flags_as_flags_and_every_option_documented():
    runner = CliRunner()
    for command in (["tasks", "add"], ["individuals", "create"], ["jobs", "list"], ["learngenes", "list"],
                    ["individuals", "download"], ["serve"], ["keys", "create"]):
        text = runner.invoke(cli.app, [*command, "--help"], terminal_width=200).stdout
        assert "<bool>" not in text, command
        options = [line for line in text.splitlines() if line.lstrip().startswith("--")]
        assert options, command
        for line in options:
            if not line.lstrip().startswith("--help"):
                assert len(line.split(None, 2)) > 2, f"{command}: undocumented option {line.strip()}"
    text = runner.invoke(cli.app, ["individuals", "create", "--help"], terminal_width=200).stdout
    assert "--wait " in text and "[default: auto]" in text and "the newest learngene" in text


def test_without_a_key_the_error_names_the_variable_and_the_option(learngene, files):
    line = _one_error_line(learngene("tasks", "add", files["task1"]))
    assert line.startswith("error: 401 Unauthorized: ") and "LEARNGENE_API_KEY" in line and "--key" in line


def test_aliases_and_downloads_with_their_cards(learngene, worker, files, tmp_path):
    assert learngene("--key", API_KEY, "tasks", "add", files["task1"], "--epochs", 1, "--wait").exit_code == 0
    assert learngene("--key", API_KEY, "tasks", "add", files["task2"], "--epochs", 1, "--wait").exit_code == 0
    assert learngene("--key", API_KEY, "learngenes", "alias", "set", "champion", 1).stdout.strip() == \
        "alias champion -> learngene 1"
    assert "champion" in learngene("learngenes", "show", 1).stdout
    made = learngene("--key", API_KEY, "--json", "individuals", "create", files["support"], "--learngene",
                     "champion", "--epochs", 1, "--wait")
    assert made.exit_code == 0 and json.loads(made.stdout)["result"]["learngene_id"] == 1
    out = tmp_path / "models" / "ind.onnx"
    out.parent.mkdir()
    saved = learngene("individuals", "download", 1, "--format", "onnx", "-o", out)
    assert saved.exit_code == 0, saved.output
    assert out.read_bytes()[:2] != b"" and "kind: \"individual\"" in out.with_suffix(".md").read_text()
    lg = learngene("learngenes", "download", 1, "-o", tmp_path / "lg1.safetensors")
    assert lg.exit_code == 0 and (tmp_path / "lg1.md").read_text().startswith("---\nid: 1\nkind: \"learngene\"")
    assert "base_model" in learngene("learngenes", "card", 1).stdout
    assert learngene("--key", API_KEY, "learngenes", "alias", "delete", "champion").exit_code == 0
    assert _one_error_line(learngene("learngenes", "alias", "show", "champion")).startswith("error: 404 ")


def test_keys_find_the_registry_from_a_subfolder_and_refuse_a_missing_one(api, monkeypatch, tmp_path):
    if api.settings.database_url:
        pytest.skip("about finding a SQLite registry folder; the PostgreSQL registry is named by its URL")
    home = api.settings.data_dir.parent  # holds var/registry.sqlite3
    (home / "sub" / "deeper").mkdir(parents=True)
    # --data-dir below sets LEARNGENE_DATA_DIR in os.environ (for a worker process): put it back afterwards.
    monkeypatch.setenv("LEARNGENE_DATA_DIR", "")
    monkeypatch.delenv("LEARNGENE_DATA_DIR")
    monkeypatch.chdir(home / "sub" / "deeper")
    listed = CliRunner().invoke(cli.app, ["keys", "list"])
    assert listed.exit_code == 0 and "tests" in listed.stdout  # the api fixture's key, in the found registry
    assert f"registry: {home / 'var' / 'registry.sqlite3'}" in listed.stderr
    assert not (home / "sub" / "deeper" / "var").exists()
    monkeypatch.chdir(tmp_path.parent)
    elsewhere = CliRunner().invoke(cli.app, ["keys", "create", "--scope", "write", "--data-dir",
                                             str(tmp_path / "nothing")])
    assert elsewhere.exit_code == 1 and "no registry in" in elsewhere.stderr and "--data-dir" in elsewhere.stderr
    assert not (tmp_path / "nothing").exists()


def test_the_banner_prints_one_command_to_paste(tmp_path):
    from service.cli import banner
    from service.settings import Settings

    text = banner(Settings(data_dir=tmp_path / "data", port=8123), "Learngene service")
    (command,) = [line.strip() for line in text.splitlines() if "keys create" in line]
    assert command.startswith(f"LEARNGENE_DATA_DIR={(tmp_path / 'data').resolve()} ")
    assert command.endswith("learngene keys create --scope write") and " if " not in command
    assert "LEARNGENE_API_KEY" in text and "--key" in text


def test_individuals_delete(learngene, worker, files):
    assert learngene("--key", API_KEY, "tasks", "add", files["task1"], "--epochs", 1, "--wait").exit_code == 0
    assert learngene("--key", API_KEY, "individuals", "create", files["support"], "--epochs", 1,
                     "--wait").exit_code == 0
    assert _one_error_line(learngene("individuals", "delete", 1)).startswith("error: 401 Unauthorized: ")
    deleted = learngene("--key", API_KEY, "individuals", "delete", 1)
    assert deleted.exit_code == 0 and deleted.stdout.strip() == "deleted individual 1"
    assert _one_error_line(learngene("individuals", "show", 1)).startswith("error: 404 Not Found: ")
    assert _one_error_line(learngene("--key", API_KEY, "individuals", "delete", 1)).startswith("error: 404 ")
