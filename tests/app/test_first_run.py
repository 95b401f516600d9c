"""A stranger's first run: installs from package names only, no shared secret, consumers that tell
when they are live, and logs an operator can read."""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import stat
import time
from pathlib import Path

import aiohttp
import pytest

import devstack
from app import logs
from app.config import ConfigError, check_secrets, read_env_file
from app.middlewares import setup_logging
from handlers.auth import make_access_token
from tests.conftest import make_config, wait_for
from tests.support import ROOT, glint_process, login, register, wait_http

# ---------------------------------------------------------------- install files

INSTALL_FILES = ["constraints.txt", "setup.cfg", "pyproject.toml", "Makefile", "web/package.json",
                 "web/package-lock.json"]
# a path or URL of one machine: a file URL, an absolute path outside the repository, a direct
# reference (`name @ URL`), or an index or link option that points pip or npm elsewhere
LOCAL_REFERENCE = re.compile(
    r"file:(?!\s)|(?<![\w.$-])/(?:tmp|root|home|opt|var|srv|mnt|media|Users)/|\s@\s|--(?:find-links|index-url|"
    r"extra-index-url)|pip install.*\s-[fi]\s")


def test_install_files_name_packages_only():
    for name in INSTALL_FILES:
        path = ROOT / name
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            assert not LOCAL_REFERENCE.search(line), f"{name}:{number} points at one machine: {line.strip()}"


def test_every_constraint_is_a_registry_name_and_version():
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+!-]*", line.strip()), line


def test_npm_lock_resolves_from_the_registry_only():
    lock = ROOT / "web" / "package-lock.json"
    if not lock.exists():
        pytest.skip("no web client yet")
    for name, package in json.loads(lock.read_text()).get("packages", {}).items():
        if not name:
            continue
        assert not package.get("link"), f"{name} is a link to a folder"
        resolved = package.get("resolved")
        assert resolved is None or resolved.startswith("https://registry.npmjs.org/"), (name, resolved)


# ---------------------------------------------------------------- secrets

def source_strings() -> set[str]:
    """Every string constant in glint's Python source and every default in its deployment files."""
    found: set[str] = set()
    for folder in ("app", "devstack", "handlers", "jobs", "realtime", "storage", "bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and 1 <= len(node.value) <= 256:
                    found.add(node.value)
    for path in [ROOT / "docker-compose.yml", *(ROOT / "deploy").rglob("*")]:
        if path.is_file():
            found.update(re.findall(r":-([^}]+)}", path.read_text(errors="replace")))
    found.update({"change-me-in-production-glint-dev-secret", "dev-only-change-me", "secret", ""})
    return found


def hs256(secret: str, claims: dict) -> str:
    """An HS256 JWT, made by hand (a short key is the point here, which PyJWT warns about)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


def make_run_env(stack_root: Path, **extra: str) -> dict[str, str]:
    """The environment `make run` gives `glint serve`: no GLINT_* variable but the stack's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env.update(GLINT_STACK_DIR=str(stack_root), **extra)
    return env


async def stop_server(proc) -> str:
    """SIGTERM, then the process must exit 0; what it printed on stdout."""
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def test_the_stack_writes_its_own_random_secrets_readable_by_its_owner_only(stack_root, stack_env):
    env_file = stack_root / "stack.env"
    written = read_env_file(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((stack_root / "stack.json").stat().st_mode) == 0o600
    strings = source_strings()
    for name in ("GLINT_JWT_SECRET", "GLINT_TWO_FACTOR_KEY", "GLINT_S3_ACCESS_KEY", "GLINT_S3_SECRET_KEY"):
        assert written[name] == stack_env[name] and written[name] not in strings, name
    assert len(written["GLINT_JWT_SECRET"].encode()) >= 32


async def test_a_token_signed_with_any_string_from_the_source_is_refused(stack_root, stack_env, database_url):
    port = devstack.free_port()
    base = f"http://127.0.0.1:{port}"
    env = make_run_env(stack_root, GLINT_DATABASE_URL=database_url, GLINT_EVENTS_TRANSPORT="inline",
                       GLINT_ACCESS_LOG="false")
    async with glint_process("-m", "app.cli", "serve", "--port", str(port), env=env) as proc:
        await wait_http(base + "/healthz", proc)
        async with aiohttp.ClientSession(base) as session:
            user = await register(session)
            now = int(time.time())
            claims = {"sub": user["id"], "sid": "1", "iat": now, "exp": now + 600, "typ": "access"}
            limit = asyncio.Semaphore(32)

            async def status(token: str) -> int:
                async with limit, session.get("/api/accounts/users/me/",
                                              headers={"Authorization": f"Bearer {token}"}) as response:
                    return response.status

            strings = sorted(source_strings())
            statuses = await asyncio.gather(*(status(hs256(s, claims)) for s in strings))
            accepted = [s for s, code in zip(strings, statuses) if code != 401]
            assert not accepted, f"accepted tokens signed with {accepted[:5]}"
            # the same request with the stack's own secret is accepted: the check above can fail
            tokens = await login(session, user["username"])
            real = make_access_token(stack_env["GLINT_JWT_SECRET"], int(user["id"]), 1, 600)
            assert await status(real) in (200, 401)  # session 1 may not be this login's
            assert await status(tokens["access"]) == 200
        printed = await stop_server(proc)
    # the first screen of `make run`: where the app, the docs and the metrics are, and how to make an admin
    for expected in (f"glint is serving on {base}", f"{base}/api/docs/", f"{base}/metrics", "make createsuperuser"):
        assert expected in printed, printed


async def test_serve_refuses_to_start_without_a_long_enough_secret(stack_env, database_url):
    for secret in ("", "too-short"):
        env = make_run_env(Path("/nonexistent-glint-stack"), **{
            k: v for k, v in stack_env.items() if k.startswith("GLINT_") and k != "GLINT_JWT_SECRET"})
        env.update(GLINT_DATABASE_URL=database_url, GLINT_JWT_SECRET=secret)
        async with glint_process("-m", "app.cli", "serve", "--port", str(devstack.free_port()), env=env) as proc:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode != 0
        assert b"GLINT_JWT_SECRET" in err and b"secrets.token_urlsafe" in err, err


def test_create_app_refuses_a_missing_or_short_secret(stack_env):
    with pytest.raises(ConfigError, match="GLINT_JWT_SECRET"):
        check_secrets(make_config(stack_env, jwt_secret=""))
    with pytest.raises(ConfigError, match="GLINT_JWT_PREVIOUS_SECRET"):
        check_secrets(make_config(stack_env, jwt_previous_secret="short"))


async def test_rotation_keeps_sessions_alive(aiohttp_client, stack_env, database_url, redis_clean):
    from app.main import create_app

    old, new = "o" * 40, "n" * 40
    before = await aiohttp_client(create_app(make_config(stack_env, database_url=database_url, jwt_secret=old)))
    user = await register(before)
    tokens = await login(before, user["username"])
    after = await aiohttp_client(create_app(make_config(stack_env, database_url=database_url, jwt_secret=new,
                                                        jwt_previous_secret=old)))
    response = await after.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert response.status == 200  # signed with the previous secret: still valid
    response = await after.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert response.status == 200
    fresh = (await response.json())["access"]
    import jwt

    jwt.decode(fresh, new, algorithms=["HS256"])  # new tokens are signed with the current secret
    finished = await aiohttp_client(create_app(make_config(stack_env, database_url=database_url, jwt_secret=new)))
    response = await finished.get("/api/accounts/users/me/", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert response.status == 401  # once the previous secret is dropped, its tokens stop


# ---------------------------------------------------------------- live from the first second

async def test_kafka_consumers_report_readiness_and_deliver_a_like_live(stack_root, stack_env, database_url):
    """/readyz is 503 naming the consumers until they hold their partitions; then a like reaches
    its author's socket; SIGTERM leaves the groups and exits within the shutdown timeout."""
    port = devstack.free_port()
    base = f"http://127.0.0.1:{port}"
    run = f"r{os.getpid()}{time.monotonic_ns() % 10**6}"
    env = make_run_env(stack_root, GLINT_DATABASE_URL=database_url, GLINT_KAFKA_TOPIC_PREFIX=f"{run}.",
                       GLINT_KAFKA_GROUP_PREFIX=f"{run}-", GLINT_SHUTDOWN_TIMEOUT="5", GLINT_JOBS_ENABLED="false")
    async with glint_process("-m", "app.cli", "serve", "--port", str(port), env=env) as proc:
        await wait_http(base + "/healthz", proc)
        async with aiohttp.ClientSession(base) as session:
            seen: list[dict] = []

            async def ready() -> bool:
                async with session.get("/readyz") as response:
                    body = await response.json()
                    seen.append(body)
                    return response.status == 200

            await wait_for(ready, timeout=60)
            for body in seen[:-1]:  # what kept it unready was the consumers' join, nothing else
                assert body["checks"].get("consumers") == "failing"
                assert {name for name, state in body["checks"].items() if state == "failing"} == {"consumers"}
            author, liker = await register(session), await register(session)
            author_tokens, liker_tokens = await login(session, author["username"]), await login(session, liker["username"])
            post_id = await _post(session, author_tokens["access"])
            async with session.ws_connect(f"/ws?token={author_tokens['access']}") as ws:
                assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
                async with session.post(f"/api/posts/{post_id}/like/",
                                        headers={"Authorization": f"Bearer {liker_tokens['access']}"}) as response:
                    assert response.status in (200, 201)
                while True:
                    frame = json.loads((await ws.receive(timeout=15)).data)
                    if frame["type"] == "notification.new":
                        break
        started = time.monotonic()
        await stop_server(proc)
        assert time.monotonic() - started < 5 + 3  # the shutdown timeout, plus leaving the groups


async def test_sigterm_while_consumers_start_exits_within_the_shutdown_timeout(stack_root, database_url):
    port = devstack.free_port()
    run = f"j{os.getpid()}{time.monotonic_ns() % 10**6}"
    env = make_run_env(stack_root, GLINT_DATABASE_URL=database_url, GLINT_KAFKA_TOPIC_PREFIX=f"{run}.",
                       GLINT_KAFKA_GROUP_PREFIX=f"{run}-", GLINT_SHUTDOWN_TIMEOUT="3", GLINT_JOBS_ENABLED="false")
    async with glint_process("-m", "app.cli", "serve", "--port", str(port), env=env) as proc:
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        started = time.monotonic()  # the consumers are still making topics and taking leases
        await stop_server(proc)
        assert time.monotonic() - started < 3 + 3


async def _post(session: aiohttp.ClientSession, access: str) -> str:
    import pyvips

    form = aiohttp.FormData()
    form.add_field("file", pyvips.Image.black(32, 32).copy(interpretation="srgb").jpegsave_buffer(),
                   filename="a.jpg", content_type="image/jpeg")
    headers = {"Authorization": f"Bearer {access}"}
    async with session.post("/api/media/", data=form, headers=headers) as response:
        media = await response.json()
    async with session.post("/api/posts/", json={"caption": "hi", "media_ids": [media["id"]]},
                            headers=headers) as response:
        assert response.status == 201, await response.text()
        return (await response.json())["id"]


# ---------------------------------------------------------------- logs

def test_a_repeated_warning_collapses_to_one_line_per_interval_with_a_count():
    now = [0.0]
    repeat = logs.RepeatFilter(interval=10.0, clock=lambda: now[0])
    logger = logging.getLogger("aiokafka.test")
    passed = []
    for i in range(5000):  # 20 s of a client logging 250 lines a second while its broker is away
        now[0] = i * 0.004
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "Unable connect to node %s", (i % 3,), None)
        if repeat.filter(record):
            passed.append(record)
    assert len(passed) == 2
    assert getattr(passed[0], "repeated", 0) == 0 and passed[1].repeated == 2499
    info = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "fine", (), None)
    assert all(repeat.filter(info) for _ in range(3))  # below WARNING nothing is held back


def test_third_party_loggers_speak_at_warning_unless_debug(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("glint").level
    try:
        setup_logging("INFO")
        logging.getLogger("pyvips").info("vips loaded something")
        logging.getLogger("glint.test").info("glint says hello")
        logging.getLogger("pyvips").warning("vips warns")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [line["msg"] for line in lines] == ["glint says hello", "vips warns"]
        setup_logging("DEBUG")
        logging.getLogger("pyvips").debug("vips detail")
        assert "vips detail" in capsys.readouterr().err
    finally:
        root.handlers[:], level, glint_level = saved
        root.setLevel(level)
        logging.getLogger("glint").setLevel(glint_level)


async def test_stack_up_prints_the_settings_but_not_the_secrets(stack_root, stack_env):
    """`glint stack up` (reusing the session's running stack) names where the secrets are, and
    prints none of them: terminals and CI logs are read by others."""
    env = make_run_env(stack_root)
    async with glint_process("-m", "app.cli", "stack", "up", env=env) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    printed = out.decode()
    assert "GLINT_DATABASE_URL=" in printed and "GLINT_JWT_SECRET=(secret, in stack.env)" in printed
    for name in ("GLINT_JWT_SECRET", "GLINT_TWO_FACTOR_KEY", "GLINT_S3_ACCESS_KEY", "GLINT_S3_SECRET_KEY"):
        assert stack_env[name] not in printed, name
