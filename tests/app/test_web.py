"""glint serves its web client: index.html for the app's routes, hashed assets cached for a
year, and the API's own answers (JSON 404, 405) untouched by the catch-all."""

from __future__ import annotations

import pytest

from app.main import create_app
from tests.conftest import make_config


@pytest.fixture
def dist(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    return tmp_path


@pytest.fixture
async def web(aiohttp_client, stack_env, database_url, redis_clean, dist):
    return await aiohttp_client(create_app(make_config(stack_env, database_url=database_url, web_dist=str(dist))))


@pytest.mark.parametrize("path", ["/", "/login", "/p/123", "/admin/", "/admin/reports", "/direct/5?request=1"])
async def test_app_routes_answer_index_html_revalidated_each_time(web, path):
    response = await web.get(path)
    assert response.status == 200
    assert "<div id=root>" in await response.text()
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-cache"


async def test_hashed_assets_are_cached_for_a_year_and_top_files_served_as_themselves(web):
    response = await web.get("/assets/index-abc123.js")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert await response.text() == "console.log(1)"
    assert (await web.get("/favicon.svg")).headers["Content-Type"].startswith("image/svg")
    missing = await web.get("/assets/nope.js")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"


async def test_head_on_the_apps_pages_and_assets_answers_as_get_without_a_body(web):
    for path in ("/", "/p/123", "/assets/index-abc123.js"):
        get, head = await web.get(path), await web.head(path)
        assert head.status == get.status == 200
        assert head.headers["Content-Type"] == get.headers["Content-Type"]
        assert head.headers["Content-Length"] == get.headers["Content-Length"]
        assert await head.read() == b""


@pytest.mark.parametrize("path", ["/assets/..%2F..%2Fetc%2Fpasswd", "/assets/../../etc/passwd", "/..%2Fsetup.cfg"])
async def test_no_file_outside_dist_is_served(web, path):
    response = await web.get(path)
    assert "[metadata]" not in await response.text() and "root:" not in await response.text()


async def test_the_api_keeps_its_json_404_and_405(web):
    unknown = await web.get("/api/no-such-thing/")
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "not_found"
    wrong_method = await web.get("/api/token/")
    assert wrong_method.status == 405
    assert (await web.get("/healthz")).headers["Content-Type"].startswith("application/json")
    # app pages do not count against the anonymous rate limit; the API does
    assert "X-RateLimit-Limit" not in (await web.get("/")).headers
    assert "X-RateLimit-Limit" in (await web.get("/api/accounts/users/me/")).headers


async def test_an_unbuilt_client_says_how_to_build_it(aiohttp_client, stack_env, database_url, redis_clean, tmp_path):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=database_url, web_dist=str(tmp_path))))
    response = await client.get("/")
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "web_client_not_built"
    assert "make web" in body["error"]["message"]
