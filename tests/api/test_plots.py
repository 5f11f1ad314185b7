"""The PNG routes: 200 image/png that decodes, ETag and 304, the LRU, 404 problem+json for unknown ids."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.api.registry_data import populate


@pytest.fixture
def data(api, make_task):
    return populate(api, make_task)


def png_size(response) -> tuple[int, int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image.size


def test_every_plot_renders_and_revalidates(api, data):
    urls = [f"/learngenes/{data.learngene_ids[-1]}/heatmap.png", f"/learngenes/{data.learngene_ids[0]}/heatmap.png",
            "/collectives/default/versions/3/accuracy.png", "/collectives/default/versions/1/accuracy.png",
            "/collectives/default/parameters.png", f"/individuals/{data.individual_id}/curve.png"]
    for url in urls:
        first = api.client.get(url)
        width, height = png_size(first)
        assert width > 300 and height > 200, url
        etag = first.headers["etag"]
        assert first.headers["cache-control"]
        again = api.client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag and not again.content, url
        assert api.client.get(url).content == first.content  # served from the cache, same bytes
    etags = {api.client.get(url).headers["etag"] for url in urls}
    assert len(etags) == len(urls)  # every image has its own validator
    assert len(api.client.app.state.plot_cache) == len(urls)


def test_parameters_plot_changes_with_the_head(api, data, make_task):
    before = api.client.get("/collectives/default/parameters.png")
    assert before.headers["cache-control"] == "no-cache"
    api.post_task(make_task(["x", "y"], 6, seed=5), name="later")
    api.run_jobs()
    after = api.client.get("/collectives/default/parameters.png", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    png_size(after)


def test_heatmap_is_immutable_and_cacheable(api, data):
    r = api.client.get(f"/learngenes/{data.learngene_ids[0]}/heatmap.png")
    assert "max-age" in r.headers["cache-control"]


@pytest.mark.parametrize("url", [
    "/learngenes/999/heatmap.png", "/individuals/999/curve.png", "/collectives/nope/parameters.png",
    "/collectives/nope/versions/1/accuracy.png", "/collectives/default/versions/99/accuracy.png",
])
def test_unknown_ids_are_404_problems(api, data, url):
    r = api.client.get(url)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/not-found" and r.json()["instance"] == url


def test_plots_are_open_without_a_key(api, data):
    r = api.client.get("/collectives/default/versions/2/accuracy.png", headers={"Authorization": ""})
    png_size(r)
