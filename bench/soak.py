"""`glint bench soak`: the mixed scenario against one server for N minutes, one row a minute.

Each minute is one round of the `mixed` scenario (fresh worker processes, sockets opened again:
connection churn is part of a soak); after it the server's own /metrics gives its resident memory
and open file descriptors (prometheus_client's process collector) and its open sockets. A row
says the minute's throughput, p50/p99 over every timed operation, errors, RSS and fds; the
summary says how RSS and fds moved after the first (warm-up) minute.
"""

from __future__ import annotations

import math
import re
import time
from array import array
from dataclasses import replace
from typing import Any, Callable

from bench.runner import Options, Target, run_scenario
from bench.stats import percentile

SERVER_GAUGES = {"rss_mb": "process_resident_memory_bytes", "fds": "process_open_fds",
                 "sockets": "glint_ws_connections"}


async def server_gauges(url: str) -> dict[str, float]:
    """The server's RSS (MB), open fds and sockets from its /metrics (NaN where it has none)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url.rstrip("/") + "/metrics") as response:
            text = await response.text()
    out: dict[str, float] = {}
    for key, name in SERVER_GAUGES.items():
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        value = float(found.group(1)) if found else math.nan
        out[key] = value / 1e6 if key == "rss_mb" else value
    return out


def minute_row(minute: int, run: Any, gauges: dict[str, float]) -> dict[str, float]:
    """One row: the round's operations and errors, and the server's gauges after it."""
    merged = sorted(v for values in run.samples.latencies.values() for v in values) or array("d")
    ok = sum(r["ok"] for r in run.rounds)
    errors = sum(r["errors"] for r in run.rounds)
    return {"minute": minute, "ops_per_s": sum(r["throughput"] for r in run.rounds), "ok": ok, "errors": errors,
            "p50_ms": percentile(merged, 50) * 1000, "p99_ms": percentile(merged, 99) * 1000, **gauges}


def format_row(row: dict[str, float]) -> str:
    return (f"  minute {row['minute']:>3}: {row['ops_per_s']:>7,.0f} ops/s  p50 {row['p50_ms']:>7.1f} ms  "
            f"p99 {row['p99_ms']:>7.1f} ms  errors {row['errors']:>5}  RSS {row['rss_mb']:>7.1f} MB  "
            f"fds {row['fds']:>5.0f}  sockets {row['sockets']:>4.0f}")


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """How the server moved over the soak: RSS and fds after the first minute to the end, the
    worst p99, all errors."""
    if not rows:
        return {}
    warm = rows[0]
    return {"minutes": len(rows), "rss_start_mb": warm["rss_mb"], "rss_end_mb": rows[-1]["rss_mb"],
            "rss_growth_after_warmup_mb": rows[-1]["rss_mb"] - warm["rss_mb"],
            "fds_start": warm["fds"], "fds_end": rows[-1]["fds"], "fds_max": max(r["fds"] for r in rows),
            "p99_max_ms": max(r["p99_ms"] for r in rows), "p99_median_ms": sorted(r["p99_ms"] for r in rows)[len(rows) // 2],
            "errors": sum(r["errors"] for r in rows), "ok": sum(r["ok"] for r in rows)}


async def soak(url: str, manifest: dict[str, Any], options: Options, minutes: int, minute_seconds: float = 60.0,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the soak; the rows and the summary."""
    target = Target("soak", url, manifest)
    per_minute = replace(options, duration=minute_seconds)
    started = time.time()
    before = await server_gauges(url)
    log(f"  before: RSS {before['rss_mb']:.1f} MB, fds {before['fds']:.0f}")
    rows = []
    for minute in range(1, minutes + 1):
        [run] = await run_scenario("mixed", [target], per_minute, rounds=1, show_progress=False, log=lambda *_: None)
        rows.append(minute_row(minute, run, await server_gauges(url)))
        log(format_row(rows[-1]))
    return {"url": url, "started_at": started, "minute_seconds": minute_seconds, "concurrency": options.concurrency,
            "before": before, "rows": rows, "summary": summarize(rows)}
