"""messages: direct messages over /ws (messages/s, send -> receive p50/p99/p999, across processes).

The load generator of this scenario is bench/chat.py, owned by the messaging work; this module
delegates to it. bench/chat.py provides the scenario interface of bench/scenarios/__init__.py:
`prepare(target, options)`, `work(ctx)` (or `setup`/`work(ctx, state)`/`teardown`) and
optionally `finish(...)`.
"""

from __future__ import annotations

from bench.runner import ScenarioSkipped


def _chat():
    try:
        from bench import chat
    except ImportError:
        raise ScenarioSkipped("bench/chat.py (the message load generator) has not landed yet") from None
    if not hasattr(chat, "prepare") or not hasattr(chat, "work"):
        raise ScenarioSkipped("bench/chat.py does not provide the scenario interface (prepare, work)")
    return chat


async def prepare(target, options) -> dict:
    return await _chat().prepare(target, options)


def __getattr__(name: str):
    # setup, work, teardown, finish: whatever bench/chat.py defines, looked up when the runner asks
    if name in ("setup", "work", "teardown", "finish"):
        chat = _chat()
        if hasattr(chat, name):
            return getattr(chat, name)
    raise AttributeError(name)
