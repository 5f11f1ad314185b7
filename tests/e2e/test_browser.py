"""The dashboard in a real browser: the embedded service (`python -m service run`) is fed over HTTP, then
headless Chromium (Debian's package, driven by Playwright) opens the catalog, a learngene and an individual,
checks the images loaded, and saves full-page screenshots under var/test-output/browser/.

Debian's Chromium is required (`make browser` installs it): without it this test fails rather than skips,
so a CI run cannot pass while silently not testing the dashboard. Playwright's own browser download is
never used; its Python wheel carries the driver, so nothing is fetched at run time.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "var" / "test-output" / "browser"
KEY = "lgk_browser-write-key"
TASKS = [("shapes", ["alpha", "beta", "gamma"]), ("more shapes", ["delta", "eps", "zeta"]),
         ("mixed", ["eta", "theta", "alpha"])]
TARGET = ["p", "q", "r", "s"]


@pytest.fixture
def service(tmp_path, kit):
    port = kit.free_port()
    settings = {"data_dir": tmp_path / "var", "port": port, "extract_method": "gradient", "api_key": KEY}
    log = tmp_path / "service.log"
    proc = kit.spawn(["-m", "service", "run"], settings, log)
    try:
        kit.wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as client:
            yield client
    finally:
        kit.stop(proc)


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium) to run this test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `.venv/bin/pip install -e '.[test]'`")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def grow_and_order(client, make_task, kit) -> tuple[list[int], int]:
    """Three tasks (epochs 2) and one 4-way individual with an eval set; returns learngene ids and the individual."""
    jobs = [client.post("/tasks", files={"file": (f"task{i}.npz", make_task(classes, 10, seed=i))},
                        data={"name": name, "epochs": "2"}).json()["id"] for i, (name, classes) in enumerate(TASKS)]
    done = [kit.wait_job(client, j) for j in jobs]
    assert [d["status"] for d in done] == ["succeeded"] * 3, done
    r = client.post("/individuals", data={"epochs": "10", "seed": "1"},
                    files={"file": ("support.npz", make_task(TARGET, 5, seed=20)),
                           "eval_file": ("query.npz", make_task(TARGET, 5, seed=21))})
    assert r.status_code == 202, r.text
    job = kit.wait_job(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    return [d["result"]["learngene_id"] for d in done], job["result"]["individual_id"]


def image_width(page, selector: str) -> int:
    """naturalWidth of an <img> once the browser finished with it (0 when it failed to load)."""
    page.wait_for_function("s => document.querySelector(s).complete", arg=selector)
    return page.eval_on_selector(selector, "img => img.naturalWidth")


def test_dashboard_in_chromium(service, browser, make_task, kit, capsys):
    from playwright.sync_api import expect

    client = service
    learngene_ids, individual_id = grow_and_order(client, make_task, kit)
    catalog_ids = [item["id"] for item in client.get("/learngenes").json()["items"]]
    assert sorted(catalog_ids) == sorted(learngene_ids)
    newest = max(catalog_ids)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    def screenshot(page, name: str) -> None:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=str(client.base_url))
    page.set_default_timeout(30_000)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    page.goto("/ui/learngenes")
    rows = page.eval_on_selector_all("tr[data-learngene]", "rows => rows.map(r => Number(r.dataset.learngene))")
    assert rows == sorted(catalog_ids, reverse=True)  # every learngene, newest first
    screenshot(page, "learngenes")

    page.click(f'#catalog a[href="/ui/learngenes/{newest}"]')
    page.wait_for_url(f"**/ui/learngenes/{newest}")
    assert page.inner_text("h1") == f"Learngene #{newest}"
    assert image_width(page, "img#heatmap") > 300
    assert page.locator("#scores tr.chosen").count() == len(client.get(f"/learngenes/{newest}").json()["layers"])
    assert page.get_attribute('a[href$="/weights"]', "href") == f"/learngenes/{newest}/weights"
    screenshot(page, f"learngene-{newest}")

    page.goto(f"/ui/individuals/{individual_id}")
    assert image_width(page, "img#curve") > 300
    eval_accuracy = client.get(f"/individuals/{individual_id}").json()["metrics"]["eval_accuracy"]
    assert page.inner_text("#eval-accuracy").startswith(f"{100 * eval_accuracy:.1f}%")
    screenshot(page, f"individual-{individual_id}")

    page.goto("/ui/collectives/default")
    for img in page.locator("img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")
    screenshot(page, "collective-default")

    # A job page while the job runs: live through GET /jobs/{id}/events, reloaded with the result at the end.
    events: list[str] = []
    page.on("request", lambda r: events.append(r.url) if r.url.endswith("/events") else None)
    job_id = client.post("/tasks", files={"file": ("late.npz", make_task(["kappa", "lambda"], 30, seed=7))},
                         data={"name": "late", "epochs": "6"}).json()["id"]
    page.goto(f"/ui/jobs/{job_id}")
    live_at_load = page.locator("script").count() > 0  # only an unfinished job's page has the live script
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#job-progress")).to_have_js_property("value", 1)
    if live_at_load:
        assert any(url.endswith(f"/jobs/{job_id}/events") for url in events), events
    screenshot(page, f"job-{job_id}")

    assert not failed, failed  # no page, image or stylesheet answered with an error
    with capsys.disabled():
        print(f"\njob page opened while job {job_id} ran (live via server-sent events): {live_at_load}")
        print("browser screenshots:\n  " + "\n  ".join(str(p) for p in shots))
    assert all(p.stat().st_size > 10_000 for p in shots)
