"""The dashboard pages: 200 text/html with what each must show, HTML 404 for unknown ids and paths, and
task names escaped."""
from __future__ import annotations

import pytest

from tests.api.registry_data import TARGET, TASK_NAMES, populate

ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


@pytest.fixture
def data(api, make_task):
    return populate(api, make_task)


def page(api, url: str) -> str:
    r = api.client.get(url)
    assert r.status_code == 200, (url, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    for link in ('href="/ui/learngenes"', 'href="/ui/individuals"', 'href="/ui/jobs"', 'href="/docs"'):
        assert link in html, (url, link)  # the nav bar
    return html


def test_root_redirects_to_the_dashboard(api):
    r = api.client.get("/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/ui"


def test_overview(api, data):
    html = page(api, "/ui")
    assert 'href="/ui/collectives/default"' in html
    for lg in data.learngene_ids:
        assert f'href="/ui/learngenes/{lg}"' in html
    assert f'href="/ui/jobs/{data.individual_job_id}"' in html
    assert "<b>3</b> learngenes" in html and "<b>1</b> individuals" in html


def test_collective_page_and_escaping(api, data):
    html = page(api, "/ui/collectives/default")
    assert "pets" in html and "deer" in html
    assert ESCAPED in html and TASK_NAMES[2] not in html  # never raw HTML from a task name
    assert 'src="/collectives/default/parameters.png"' in html
    assert 'src="/collectives/default/versions/3/accuracy.png"' in html  # the head's matrix
    for n in (1, 2, 3):
        assert f'href="/ui/collectives/default/versions/{n}"' in html


def test_version_page(api, data):
    html = page(api, "/ui/collectives/default/versions/2")
    assert 'src="/collectives/default/versions/2/accuracy.png"' in html
    assert "Open-world report of deer" in html and "flagged unknown" in html
    assert 'href="/ui/collectives/default/versions/1"' in html  # the parent
    assert f'href="/ui/learngenes/{data.learngene_ids[1]}"' in html
    first = page(api, "/ui/collectives/default/versions/1")
    assert "first task" in first  # no open-world report for the first task


def test_learngene_catalog_filters_and_pages(api, data):
    html = page(api, "/ui/learngenes")
    for lg in data.learngene_ids:
        assert f'data-learngene="{lg}"' in html
    assert "default@v3" in html and "gradient" in html
    filtered = page(api, "/ui/learngenes?collective=nope")
    assert "data-learngene=" not in filtered and "No learngene matches" in filtered
    assert page(api, "/ui/learngenes?method=gradient").count("data-learngene=") == 3
    bad = api.client.get("/ui/learngenes?cursor=garbage")  # a link this service never made: 400, with page 1
    assert bad.status_code == 400 and "The first page" in bad.text


def test_catalog_pagination(api, data, monkeypatch):
    from service.ui import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    html = page(api, "/ui/learngenes?method=gradient")
    assert html.count("data-learngene=") == 2 and "Older" in html
    next_url = html.split('<p class="pager"><a href="')[1].split('"')[0].replace("&amp;", "&")
    assert "method=gradient" in next_url and "cursor=" in next_url
    rest = page(api, next_url.removeprefix("http://testserver"))
    assert rest.count("data-learngene=") == 1 and f'data-learngene="{data.learngene_ids[0]}"' in rest


def test_learngene_page(api, data):
    lg_id = data.learngene_ids[-1]
    lg = api.client.get(f"/learngenes/{lg_id}").json()
    html = page(api, f"/ui/learngenes/{lg_id}")
    assert f'src="/learngenes/{lg_id}/heatmap.png"' in html
    assert f'href="/learngenes/{lg_id}/weights"' in html
    assert ", ".join(f"conv{i}" for i in lg["layers"]) in html
    assert html.count('class="chosen"') == len(lg["layers"])  # the chosen rows of the scores table
    assert f"{lg['scores'][0]:.4f}" in html
    assert "pets → deer → " + ESCAPED in html  # tasks seen, in order, escaped
    assert f'href="/ui/individuals/{data.individual_id}"' in html  # built from it
    assert 'href="/ui/collectives/default/versions/2"' in html  # the parent version


def test_learngene_page_shows_validated_candidates(api, data):
    from service.models import Learngene

    with api.ctx.sessions() as s:
        row = s.get(Learngene, data.learngene_ids[0])
        row.candidates = [{"layers": row.layers, "accuracy": 0.8125}, {"layers": [9, 10, 11], "accuracy": 0.5}]
        s.commit()
    html = page(api, f"/ui/learngenes/{data.learngene_ids[0]}")
    assert "Validated candidate blocks" in html and "81.2%" in html and "50.0%" in html and "chosen" in html


def test_individual_pages(api, data):
    ind = api.client.get(f"/individuals/{data.individual_id}").json()
    html = page(api, f"/ui/individuals/{data.individual_id}")
    assert f'src="/individuals/{data.individual_id}/curve.png"' in html
    assert f'href="/individuals/{data.individual_id}/weights"' in html
    assert f'href="/ui/learngenes/{ind["learngene_id"]}"' in html
    assert f"{100 * ind['metrics']['train_accuracy']:.1f}%" in html
    assert f"{100 * ind['metrics']['eval_accuracy']:.1f}%" in html
    for name in TARGET:
        assert f"<td>{name}</td>" in html
    assert "<th>epochs</th><td>3</td>" in html  # the options table
    listing = page(api, "/ui/individuals")
    assert f'href="/ui/individuals/{data.individual_id}"' in listing and "3-way" in listing
    assert 'id="siblings"' not in html  # nothing else was trained on that support set yet


def test_individual_page_compares_models_on_the_same_support_set(api, make_task):
    support, other = make_task(["p", "q"], 4, seed=1), make_task(["p", "q"], 4, seed=2)
    api.post_task(make_task(["a", "b"], 6), name="base")
    api.run_jobs()
    ids = []
    for data, init in ((support, "learngene"), (support, "scratch"), (other, "learngene")):
        r = api.client.post("/individuals", data={"epochs": "1", "init": init}, files={"file": ("s.npz", data)})
        api.run_jobs()
        ids.append(api.client.get(f"/jobs/{r.json()['id']}").json()["result"]["individual_id"])
    html = page(api, f"/ui/individuals/{ids[0]}")
    table = html[html.index('id="siblings"'):html.index("</table>", html.index('id="siblings"'))]
    assert f'href="/ui/individuals/{ids[1]}"' in table and "scratch" in table  # its scratch twin
    assert f"/ui/individuals/{ids[2]}" not in table  # another support set: not comparable


def test_job_pages(api, data, make_task):
    listing = page(api, "/ui/jobs")
    for job in data.job_ids + [data.individual_job_id]:
        assert f'href="/ui/jobs/{job}"' in listing
    done = page(api, f"/ui/jobs/{data.job_ids[0]}")
    assert "succeeded" in done and "<progress" in done and "EventSource" not in done
    assert f'href="/ui/learngenes/{data.learngene_ids[0]}"' in done
    assert 'href="/ui/collectives/default/versions/1"' in done
    finished = page(api, f"/ui/jobs/{data.individual_job_id}")
    assert f'href="/ui/individuals/{data.individual_id}"' in finished

    queued = api.post_task(make_task(["x", "y"], 6, seed=9), name="waiting")["id"]  # not run: stays queued
    live = page(api, f"/ui/jobs/{queued}")
    # Live updates through the SSE endpoint, no reload loop.
    assert f'new EventSource("/jobs/{queued}/events")' in live and 'http-equiv="refresh"' not in live
    assert "queued" in live


@pytest.mark.parametrize("url", ["/ui/learngenes/999", "/ui/individuals/999", "/ui/jobs/999",
                                 "/ui/collectives/nope", "/ui/collectives/default/versions/9",
                                 "/ui/learngenes/abc", "/ui/learngenes/99999999999999999999", "/ui/nowhere"])
def test_unknown_pages_are_html_404(api, data, url):
    r = api.client.get(url)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Not found" in r.text and 'href="/ui/jobs"' in r.text


def test_static_css_and_no_ui_in_the_schema(api):
    css = api.client.get("/ui/static/style.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"] and "table" in css.text
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]
    assert "/learngenes/{learngene_id}/heatmap.png" in paths


@pytest.mark.parametrize("url", ["/ui", "/ui/learngenes", "/ui/individuals", "/ui/jobs"])
def test_a_fresh_service_has_empty_pages_that_say_so(api, url):
    html = page(api, url)  # a brand-new registry: no collective, learngene, individual or job yet
    assert "yet" in html.lower() and "/ui/learngenes/1" not in html


def test_pages_show_the_model_cards(api, data):
    lg_id = data.learngene_ids[-1]
    html = page(api, f"/ui/learngenes/{lg_id}")
    assert 'id="model-card"' in html and f'href="/learngenes/{lg_id}/card"' in html
    assert f"id: {lg_id}\nkind: &#34;learngene&#34;" in html or f'id: {lg_id}\nkind: "learngene"' in html
    ind = page(api, f"/ui/individuals/{data.individual_id}")
    assert 'id="model-card"' in ind and f'href="/individuals/{data.individual_id}/model.onnx"' in ind
    assert "base_model: " in ind and "finetune" in ind
