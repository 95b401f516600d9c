"""Browser tests: the built web client served by a real glint on the test stack, driven by
Playwright through Debian's Chromium (`make chromium` installs it; CI runs it as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
import pyvips

from app.main import create_app
from tests.conftest import make_config
from tests.support import login, register

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}

# aiohttp's FileResponse opens a file in an executor thread; a request for one of the client's
# files that is still opening it when the test's server shuts down is cancelled, and the file it
# opened is left to the garbage collector, which pytest reports as an unraisable ResourceWarning
# (it failed a browser test once in five suite runs). Only that warning, only for web/dist files:
# every other warning is still an error.
SHUTDOWN_FILE_LEAK = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <_io.FileIO name='[^']*/web/dist/:pytest.PytestUnraisableExceptionWarning")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(SHUTDOWN_FILE_LEAK)


def chromium_path() -> str | None:
    return shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """web/dist, built by `make web` (skipped by make when it is newer than every source)."""
    if shutil.which("node") is None:
        pytest.skip("NO BROWSER TESTS: Node.js is not installed, so the web client cannot be built")
    subprocess.run(["make", "-s", "web"], cwd=ROOT, check=True)
    assert (WEB / "dist" / "index.html").is_file(), "make web did not build web/dist"
    return WEB / "dist"


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        subprocess.run(["make", "-s", "chromium"], cwd=ROOT, check=False)
        path = chromium_path()
    if path is None:
        pytest.skip("NO BROWSER TESTS: chromium is not installed and could not be installed (`make chromium` as root)")
    return path


@pytest.fixture
async def server(aiohttp_server, stack_env, database_url, redis_clean, web_dist):
    """A real glint on a real port serving the built client, consumers in-process."""
    app = create_app(make_config(stack_env, database_url=database_url, web_dist=str(web_dist),
                                 rate_limit_auth_per_minute=1000))
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
async def api(server) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client of the same server, for setting the scene through the API."""
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as session:
        yield session


@pytest.fixture
async def browser(chromium):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


class Person:
    """A registered user with tokens and an authorization header."""

    def __init__(self, user: dict, tokens: dict) -> None:
        self.user, self.tokens = user, tokens
        self.id = user["id"]
        self.username = user["username"]
        self.headers = {"Authorization": f"Bearer {tokens['access']}"}


async def person(api, username: str, **extra) -> Person:
    user = await register(api, username, full_name=username.capitalize(), **extra)
    return Person(user, await login(api, username))


async def signed_in(browser, server, who: Person, viewport=DESKTOP):
    """A browser context already logged in as who (the tokens the login screen would store)."""
    context = await browser.new_context(viewport=viewport, base_url=str(server.make_url("")))
    await context.add_init_script(
        f"localStorage.setItem('glint.access', {who.tokens['access']!r});"
        f"localStorage.setItem('glint.refresh', {who.tokens['refresh']!r});")
    return context


def photo(width: int = 800, height: int = 800, hue: int = 0) -> bytes:
    """A colourful gradient JPEG (so screenshots and placeholders show something)."""
    x = pyvips.Image.xyz(width, height)
    across, down = x[0] / width, x[1] / height
    r = across * 150 + 60 + (hue % 40)
    g = down * 120 + 40 + (hue * 3 % 90)
    b = (1 - across) * 120 + 80 + (hue * 7 % 50)
    return r.bandjoin([g, b]).cast("uchar").copy(interpretation="srgb").jpegsave_buffer(Q=85)


async def upload(api, who: Person, data: bytes) -> dict:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
    response = await api.post("/api/media/", data=form, headers=who.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def make_post(api, who: Person, caption: str, photos: int = 1, hue: int = 0) -> dict:
    media = [await upload(api, who, photo(hue=hue + 40 * i)) for i in range(photos)]
    response = await api.post("/api/posts/", json={"caption": caption, "media_ids": [m["id"] for m in media]},
                              headers=who.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def follow(api, who: Person, whom: Person) -> None:
    response = await api.post(f"/api/accounts/users/{whom.id}/follow/", headers=who.headers)
    assert response.status in (200, 201, 204), await response.text()


async def conversation(api, who: Person, other: Person) -> str:
    response = await api.post("/api/conversations/", json={"member_ids": [other.id]}, headers=who.headers)
    assert response.status in (200, 201), await response.text()
    return (await response.json())["id"]
