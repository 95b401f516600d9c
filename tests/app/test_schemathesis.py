"""A bounded schemathesis run over /api/openapi.json against the real app on the test stack:
every operation, generated cases as a signed-in user, failing on any 5xx or on a response that
does not match the document. (schemathesis is synchronous: it runs in a thread while the event
loop serves it.)"""

from __future__ import annotations

import asyncio
import warnings

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase

from app.main import create_app
from tests.conftest import make_config
from tests.support import login, new_post, register

CASES_PER_OPERATION = 12


def fuzz(base: str, document: dict, token: str) -> tuple[int, int, list[str]]:
    """(cases, 5xx answers, failures) of a run over every operation."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    cases = server_errors = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/ws":
            continue

        @hypothesis.settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                             report_multiple_bugs=False)
        @hypothesis.given(case=operation.as_strategy())
        def run(case) -> None:
            nonlocal cases, server_errors
            cases += 1
            response = case.call(base_url=base, session=session, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)
            if response.status_code >= 500:
                server_errors += 1
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except Exception as exc:  # the first failing case of this operation, already shrunk
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    return cases, server_errors, failures


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(
        stack_env, database_url=config.database.url, rate_limit_per_hour=1_000_000,
        rate_limit_auth_per_minute=1_000_000, rate_limit_anonymous_per_hour=1_000_000)))
    user = await register(client)
    token = (await login(client, user["username"]))["access"]
    await new_post(client, {"Authorization": f"Bearer {token}"}, "something to find #fuzz")
    document = await (await client.get("/api/openapi.json")).json()
    base = f"http://{client.server.host}:{client.server.port}"

    def run() -> tuple[int, int, list[str]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hypothesis' and schemathesis' own notices, not glint's
            return fuzz(base, document, token)

    cases, server_errors, failures = await asyncio.to_thread(run)
    print(f"schemathesis: {cases} cases, {server_errors} answered 5xx")
    assert cases > 1000
    assert server_errors == 0 and not failures, "\n".join(failures)
