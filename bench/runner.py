"""The load generator: worker processes, each with its own event loop and aiohttp session.

The parent never sends a request of the measured load itself. It prepares a plan (tokens, ids)
with the scenario's `prepare`, starts `processes` workers (multiprocessing, spawn), waits until
every worker has set up (sessions open, sockets connected), then starts them together; each runs
its share of the clients for warmup + duration seconds, ticks progress to the parent twice a
second and hands back its raw samples. Every loop is bounded in time, and only loopback targets
are accepted.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import multiprocessing as mp
import os
import queue as queue_mod
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from bench.stats import Recorder, Samples
from bench.storecpu import StoreClocks

GRACE_SECONDS = 30.0  # how long a worker may take beyond its duration (set-up, draining) before it is stopped


@dataclass
class Options:
    """How a scenario runs (picklable: it goes to every worker)."""

    duration: float = 30.0
    concurrency: int = 50
    processes: int = 2
    warmup: float = 2.0
    timeout: float = 10.0
    jwt_secret: str = ""
    token_ttl: int = 6 * 3600
    redis_url: str = ""
    database_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """One server under test and the data it serves (the seed manifest)."""

    label: str
    url: str
    manifest: dict[str, Any]


class ScenarioSkipped(Exception):
    """The target does not serve what the scenario needs (yet); the message says what."""


def check_loopback(url: str) -> None:
    """Refuse any target that is not on this machine's loopback (load is sent nowhere else)."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f"not a URL: {url!r}")
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback:
            raise ValueError(f"{url} is not a loopback address: glint bench only loads servers on this machine")


def scenario_module(name: str):
    """The module of a scenario (bench.scenarios.NAME)."""
    return importlib.import_module(f"bench.scenarios.{name}")


# ---------------------------------------------------------------- in a worker


class WorkerContext:
    """What a scenario's `work(ctx)` gets in a worker process."""

    def __init__(self, index: int, processes: int, url: str, options: Options, plan: dict, recorder: Recorder,
                 session, clients: int, first_client: int) -> None:
        self.index = index
        self.processes = processes
        self.url = url.rstrip("/")
        self.options = options
        self.plan = plan
        self.recorder = recorder
        self.session = session
        self.clients = clients  # this worker's share of the concurrency
        self.first_client = first_client  # global index of its first client
        self.loop = asyncio.get_running_loop()
        self.measure_from = 0.0
        self.deadline = 0.0

    def start(self) -> None:
        """Start the clock: warmup first, then the measured duration."""
        now = self.loop.time()
        self.measure_from = now + self.options.warmup
        self.deadline = self.measure_from + self.options.duration

    @property
    def running(self) -> bool:
        return self.loop.time() < self.deadline

    @property
    def measuring(self) -> bool:
        return self.loop.time() >= self.measure_from

    def record(self, op: str, seconds: float, error: str | None = None) -> None:
        """Record an operation that finished during the measured period (warmup is not counted)."""
        if self.measure_from <= self.loop.time() <= self.deadline:
            self.recorder.record(op, seconds, error)

    def value(self, name: str, value: float) -> None:
        if self.measuring:
            self.recorder.value(name, value)

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def request(self, op: str, method: str, path: str, *, token: str | None = None, json: Any = None,
                      data: Any = None, expect: tuple[int, ...] = (200,), decode: bool = True) -> Any:
        """One timed request; returns the decoded JSON body (or None for an error, an empty body, or
        decode=False: the load generator then spends nothing on parsing). The body's size goes into
        the values as `{op}_bytes`."""
        import aiohttp

        headers = self.headers(token) if token else None
        started = time.perf_counter()
        try:
            async with self.session.request(method, self.url + path, headers=headers, json=json, data=data) as resp:
                body = await resp.read()
                elapsed = time.perf_counter() - started
                if resp.status not in expect:
                    self.record(op, elapsed, f"http_{resp.status}")
                    return None
                self.record(op, elapsed)
                self.value(f"{op}_bytes", len(body))
                if decode and body and resp.content_type == "application/json":
                    import json as json_mod
                    return json_mod.loads(body)
                return None
        except asyncio.TimeoutError:
            self.record(op, time.perf_counter() - started, "timeout")
        except aiohttp.ClientConnectionError:
            self.record(op, time.perf_counter() - started, "connection")
            await asyncio.sleep(0.05)  # a refused connection fails at once: do not spin
        except aiohttp.ClientError as exc:
            self.record(op, time.perf_counter() - started, type(exc).__name__)
        return None

    async def each_client(self, body: Callable[[int], Awaitable[None]]) -> None:
        """Run body(client) for each of this worker's clients (global client numbers) until the deadline."""

        async def loop(client: int) -> None:
            while self.running:
                await body(client)

        await asyncio.gather(*(loop(self.first_client + i) for i in range(self.clients)))


def _share(total: int, parts: int, index: int) -> tuple[int, int]:
    """(count, first) of `index`'s share when `total` is split over `parts` as evenly as possible."""
    base, extra = divmod(total, parts)
    count = base + (1 if index < extra else 0)
    first = index * base + min(index, extra)
    return count, first


async def _worker_async(scenario: str, url: str, options: Options, plan: dict, index: int, processes: int,
                        events, ready, go, t0_value) -> dict:
    import aiohttp

    module = scenario_module(scenario)
    clients, first = _share(options.concurrency, processes, index)
    limit = max(clients * 2, 10)
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    # uncompressed, as glint answers behind nginx (which compresses at the edge); --set gzip=true asks for it
    headers = {} if options.extra.get("gzip") else {"Accept-Encoding": "identity"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        recorder = Recorder()
        ctx = WorkerContext(index, processes, url, options, plan, recorder, session, clients, first)
        setup = getattr(module, "setup", None)
        state = await setup(ctx) if setup else None
        ready.put(index)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, go.wait, GRACE_SECONDS * 2)
        recorder.t0 = t0_value.value + options.warmup
        ctx.start()

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.5)
                events.put(("tick", index, *recorder.take_progress()))

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.wait_for(module.work(ctx) if state is None else module.work(ctx, state),
                                   options.warmup + options.duration + GRACE_SECONDS)
        finally:
            tick.cancel()
            teardown = getattr(module, "teardown", None)
            if teardown:
                await teardown(ctx, state)
        return recorder.dump()


def _worker_main(scenario: str, url: str, options: Options, plan: dict, index: int, processes: int,
                 events, ready, go, t0_value) -> None:
    """A worker process: its own uvloop and session; the samples go back on `events`."""
    from app.fdlimit import raise_open_file_limit

    raise_open_file_limit()  # each socket it holds is a file
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        dump = runner(_worker_async(scenario, url, options, plan, index, processes, events, ready, go, t0_value))
        events.put(("done", index, dump))
    except BaseException as exc:  # the parent reports it; never hang the run
        ready.put(index)
        events.put(("failed", index, f"{type(exc).__name__}: {exc}"))


def run_round(scenario: str, target: Target, options: Options, plan: dict, progress=None,
              on_go: Callable[[float], None] | None = None) -> tuple[list[dict], float]:
    """Run one round against one target in `options.processes` worker processes; return the
    workers' dumps and the measured seconds. `on_go(t0)` hears when the workers were started."""
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    ready = ctx.Queue()
    go = ctx.Event()
    t0_value = ctx.Value("d", 0.0)
    processes = max(1, min(options.processes, options.concurrency))
    workers = [ctx.Process(target=_worker_main, name=f"glint-bench-{scenario}-{i}", daemon=True,
                           args=(scenario, target.url, options, plan, i, processes, events, ready, go, t0_value))
               for i in range(processes)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + GRACE_SECONDS * 2
        seen = 0
        while seen < processes:
            try:
                ready.get(timeout=max(0.1, deadline - time.monotonic()))
                seen += 1
            except queue_mod.Empty:
                raise RuntimeError(f"{scenario}: the workers did not set up within {GRACE_SECONDS * 2:.0f} s")
        t0_value.value = time.time()
        go.set()
        if on_go:
            on_go(t0_value.value)
        dumps: dict[int, dict] = {}
        failures: list[str] = []
        started = time.monotonic()
        end = started + options.warmup + options.duration + GRACE_SECONDS
        while len(dumps) + len(failures) < processes:
            try:
                kind, index, *rest = events.get(timeout=0.5)
            except queue_mod.Empty:
                if time.monotonic() > end:
                    failures.append("workers did not finish in time")
                    break
                if progress:
                    progress(time.monotonic() - started, 0, 0)
                continue
            if kind == "tick":
                if progress:
                    progress(time.monotonic() - started, rest[0], rest[1])
            elif kind == "done":
                dumps[index] = rest[0]
            else:
                failures.append(f"worker {index}: {rest[0]}")
        if failures:
            raise RuntimeError(f"{scenario}: " + "; ".join(failures))
        return [dumps[i] for i in sorted(dumps)], options.duration
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)


@dataclass
class TargetRun:
    """Everything measured on one target over the rounds."""

    target: Target
    samples: Samples = field(default_factory=Samples)
    rounds: list[dict] = field(default_factory=list)
    plan: dict = field(default_factory=dict)


def _bar(label: str, total: float, enabled: bool):
    """A tqdm progress bar over the round's seconds, with the request rate and errors as postfix."""
    from tqdm import tqdm

    bar = tqdm(total=round(total), desc=label, unit="s", leave=False, disable=not enabled, file=sys.stderr,
               bar_format="{desc} {bar} {n:.0f}/{total:.0f} s {postfix}")
    counts = {"ok": 0, "errors": 0}
    started = time.monotonic()

    def update(elapsed: float, ok: int, errors: int) -> None:
        counts["ok"] += ok
        counts["errors"] += errors
        bar.n = min(round(elapsed), bar.total)
        rate = counts["ok"] / max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"{rate:,.0f} ops/s, {counts['errors']} errors", refresh=False)
        bar.refresh()

    return bar, update


async def run_scenario(scenario: str, targets: list[Target], options: Options, rounds: int,
                       show_progress: bool = True, log: Callable[[str], None] = print) -> list[TargetRun]:
    """Prepare each target, then run the rounds alternately (A, B, A, B ...) and finish each target."""
    module = scenario_module(scenario)
    for target in targets:
        check_loopback(target.url)
    runs = [TargetRun(t) for t in targets]
    for run in runs:
        run.plan = await module.prepare(run.target, options)
    offsets = {id(run): 0.0 for run in runs}
    clocks = await asyncio.to_thread(StoreClocks, {"postgres": options.database_url, "redis": options.redis_url})
    loop = asyncio.get_running_loop()
    for number in range(rounds):
        for run in runs:
            label = f"{scenario} {run.target.label} round {number + 1}/{rounds}"
            bar, update = _bar(label, options.warmup + options.duration, show_progress)
            started: asyncio.Future = loop.create_future()
            cpu = asyncio.ensure_future(cpu_in_window(run.target.url, clocks, started, options.warmup, options.duration))
            try:
                dumps, elapsed = await asyncio.to_thread(
                    run_round, scenario, run.target, options, run.plan, update,
                    lambda t0: loop.call_soon_threadsafe(started.set_result, t0))
            finally:
                bar.close()
                if not started.done():
                    started.cancel()
            before = len(run.samples.timeline)
            run.samples.add(dumps, elapsed, offsets[id(run)])
            offsets[id(run)] += elapsed
            ok = sum(t[1] for t in run.samples.timeline[before:])
            errors = sum(t[2] for t in run.samples.timeline[before:])
            round_ = {"round": number + 1, "ok": ok, "errors": errors, "throughput": ok / elapsed}
            spent = await cpu
            for name in CPU_OF:
                if name in spent:
                    round_[f"{name}_cpu_seconds"] = spent[name]
                    round_[f"{name}_cpu_ms_per_op"] = 1000 * spent[name] / max(ok, 1)
            run.rounds.append(round_)
            log(f"  {label}: {ok / elapsed:,.0f} ops/s, {errors} errors" +
                "".join(f", {title} CPU {round_[f'{name}_cpu_ms_per_op']:.3f} ms per op"
                        for name, title in CPU_OF.items() if name in spent))
    for run in runs:
        for name in CPU_OF:
            spent = [r[f"{name}_cpu_seconds"] for r in run.rounds if f"{name}_cpu_seconds" in r]
            if spent and len(spent) == len(run.rounds):
                run.samples.gauges[f"{name}_cpu_seconds"] = sum(spent)
                run.samples.gauges[f"{name}_cpu_ms_per_op"] = 1000 * sum(spent) / max(sum(r["ok"] for r in run.rounds), 1)
    finish = getattr(module, "finish", None)
    if finish:
        for run in runs:
            await finish(run.target, options, run.plan, run.samples)
    return runs


async def server_cpu_seconds(url: str) -> float | None:
    """The server process's CPU seconds so far, from its /metrics (process_cpu_seconds_total), or
    None where it has none."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(url.rstrip("/") + "/metrics") as resp:
                text = await resp.text() if resp.status == 200 else ""
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return None


# whose CPU a round reports, per operation: the server's, from its /metrics, and the stores' on this
# machine (bench.storecpu), which spend their own share of the same cores on every operation
CPU_OF = {"server": "server", "postgres": "PostgreSQL", "redis": "Redis"}


async def cpu_in_window(url: str, clocks: StoreClocks, started: asyncio.Future, warmup: float,
                        duration: float) -> dict[str, float]:
    """CPU seconds over a round's measured window (from `warmup` after the workers started, for
    `duration`), read at both ends: "server" from its /metrics, and each local store's
    (StoreClocks); what could not be read at both ends is left out."""
    async def read() -> dict[str, float]:
        server, stores = await asyncio.gather(server_cpu_seconds(url), asyncio.to_thread(clocks.read))
        return {**stores, **({"server": server} if server is not None else {})}

    try:
        t0 = await started
    except asyncio.CancelledError:
        return {}
    await asyncio.sleep(max(0.0, t0 + warmup - time.time()))
    first = await read()
    await asyncio.sleep(max(0.0, t0 + warmup + duration - time.time()))
    last = await read()
    return {name: last[name] - first[name] for name in first.keys() & last.keys()}


def default_processes() -> int:
    """Workers default to the machine's cores (at least 1); the server competes for them too."""
    return max(1, (os.cpu_count() or 1))
