"""`glint bench`: seed data, run a scenario against one or two servers, write the results.

    glint bench seed [--users 100000] [--reset] [--manifest PATH]
    glint bench SCENARIO --url URL [--compare URL2|reference] [--reference] [--duration S] [--concurrency N] [--out DIR]
    glint bench list
    glint bench soak --url URL [--minutes 30] [--concurrency N] [--out DIR]
    glint bench notifications [--events N] [--transport kafka|inline] [--compare OLD_TREE] [--out DIR]
    glint bench chat [--clients N --rate R | --pairs K | --group N] [--servers 1|2] [--compare OLD_TREE] [--out FILE]

app/cli.py adds the `bench` subcommand with add_arguments() and calls run() with the decoded
Config; this module imports nothing heavy at import time (the parser is built on every `glint`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

SCENARIOS = {
    "feed": "home feed pages (GET /api/posts/feed/) by many users",
    "explore": "explore pages (GET /api/posts/explore/) by many users",
    "profile": "profile grids (GET /api/posts/?author=) of the seeded authors, by many users",
    "saved": "saved-post pages (GET /api/posts/saved/) by many users",
    "fanout": "a post, then the time until it is in every active follower's timeline",
    "messages": "direct messages over /ws (delegates to bench/chat.py)",
    "capacity": "idle websockets one process holds, and memory per socket (from /metrics)",
    "media": "image uploads (POST /api/media/)",
    "search": "user, post and hashtag search",
    "mixed": "a chat-heavy mix: messages, typing, presence; some feed reads and posts",
}


def default_manifest(config: Any = None) -> Path:
    """Where the seed writes its manifest and the scenarios read it: .glint/bench/seed.json."""
    from app.config import stack_dir

    return stack_dir() / "bench" / "seed.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `glint bench` arguments (a subcommand per scenario, and `seed`)."""
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="{seed,list,soak,notifications,chat," + ",".join(SCENARIOS) + "}")

    seed = sub.add_parser("seed", help="seed a realistic graph into PostgreSQL (COPY) and Redis timelines")
    seed.add_argument("--users", type=int, default=100_000, help="how many users (default 100000)")
    seed.add_argument("--follows-per-user", type=float, default=30.0, help="mean follows per user")
    seed.add_argument("--posts-per-user", type=float, default=3.0)
    seed.add_argument("--likes-per-post", type=float, default=5.0)
    seed.add_argument("--comments-per-post", type=float, default=1.0)
    seed.add_argument("--conversations-per-user", type=float, default=0.2)
    seed.add_argument("--messages-per-conversation", type=float, default=15.0)
    seed.add_argument("--active-share", type=float, default=0.3, help="share of users active lately (timelines)")
    seed.add_argument("--images", type=int, default=6, help="distinct JPEGs the media rows point at")
    seed.add_argument("--seed", type=int, default=1, help="random seed")
    seed.add_argument("--no-timelines", action="store_true", help="leave Redis alone (timelines rebuild on read)")
    seed.add_argument("--reset", action="store_true", help="first remove every user (and what hangs off them)")
    seed.add_argument("--manifest", type=Path, default=None, help="where to write the manifest (default .glint/bench/seed.json)")

    sub.add_parser("list", help="list the scenarios")

    notifications_arguments(sub.add_parser(
        "notifications", help="events/s one consumer process turns into notifications, on a private stack"))

    chat_arguments(sub.add_parser(
        "chat", help="messages/s and latencies of glint serve processes on a private stack (bench/chat.py)"))

    soak_p = sub.add_parser("soak", help="the mixed scenario for N minutes: RSS, fds, p50/p99 and errors per minute")
    soak_p.add_argument("--url", required=True, help="the server under test (loopback only)")
    soak_p.add_argument("--minutes", type=int, default=30, help="how many minutes (default 30)")
    soak_p.add_argument("--minute-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    soak_p.add_argument("--concurrency", type=int, default=50, help="concurrent clients (default 50)")
    soak_p.add_argument("--processes", type=int, default=None, help="load-generator processes (default: cores)")
    soak_p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    soak_p.add_argument("--manifest", type=Path, default=None, help="the seed's manifest (default .glint/bench/seed.json)")
    soak_p.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for the JSON")
    soak_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a mixed-scenario option")

    for name, summary in SCENARIOS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        p.add_argument("--url", required=True, help="the server under test (loopback only)")
        p.add_argument("--compare", default=None, metavar="URL2",
                       help="a second server, run alternately with --url; `reference` starts the reference ceiling (bench/reference.py)")
        p.add_argument("--reference", action="store_true",
                       help="also run the reference ceiling (bench/reference.py, started here on the configured Redis) "
                            "alternately, and report each target's share of it")
        p.add_argument("--label", default="A", help="the name of --url in the results")
        p.add_argument("--compare-label", default="B", help="the name of --compare in the results")
        p.add_argument("--rounds", type=int, default=None, help="rounds per target (default 1, or 3 with --compare)")
        p.add_argument("--duration", type=float, default=30.0, help="measured seconds per round")
        p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each round")
        p.add_argument("--concurrency", type=int, default=50, help="concurrent clients (all processes together)")
        p.add_argument("--processes", type=int, default=None, help="load-generator processes (default: cores)")
        p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
        p.add_argument("--manifest", type=Path, default=None, help="the seed's manifest (default .glint/bench/seed.json)")
        p.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for the JSON and PNG")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a scenario option (see bench/README.md), e.g. --set page_size=20")


def notifications_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `glint bench notifications` (bench/notifications.py)."""
    parser.add_argument("--events", type=int, default=20_000, help="post_liked events per round")
    parser.add_argument("--authors", type=int, default=200)
    parser.add_argument("--fans", type=int, default=2_000)
    parser.add_argument("--posts-per-author", type=int, default=5)
    parser.add_argument("--transport", choices=("inline", "kafka"), default="kafka",
                        help="kafka: the broker in the path, as `glint consume` (default); inline: relay to consumer")
    parser.add_argument("--compare", default=None, metavar="OLD_TREE",
                        help="another glint checkout (a worktree of an older commit), timed alternately")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per tree (default 1, or 3 with --compare)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one worker may take")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON (bench/results/ to commit it)")


def chat_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `glint bench chat` and `python -m bench.chat` (bench/chat.py)."""
    parser.add_argument("--clients", type=int, default=200, help="connected clients, each sending")
    parser.add_argument("--conversations", type=int, default=100, help="conversations they are spread over")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="messages per second per client (with --group: of the one sender)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of the same load before them, not measured")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--servers", type=int, default=2, choices=(1, 2), help="glint processes")
    parser.add_argument("--send-queue", type=int, default=256, help="GLINT_WS_SEND_QUEUE of the servers")
    parser.add_argument("--idle", type=int, default=0, help="idle sockets to open afterwards (0: skip)")
    parser.add_argument("--presence", type=int, default=5000, help="connections for the presence cost (0: skip)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--pairs", type=int, default=0, metavar="K",
                      help="K closed-loop sender/receiver pairs, each in its own 1:1 conversation (--rate unused)")
    mode.add_argument("--group", type=int, default=0, metavar="N",
                      help="one conversation of N members, one of them sending at --rate; ack -> last member")
    parser.add_argument("--compare", default=None, metavar="OLD_TREE",
                        help="another glint checkout (a worktree of an older commit), measured in alternating rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per tree (default 1, or 3 with --compare)")
    parser.add_argument("--out", default="", help="also write the JSON report to this file")


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"glint bench: --set wants KEY=VALUE, not {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def cmd_seed(args: argparse.Namespace, config: Any) -> None:
    from bench.seed import Plan, seed

    plan = Plan(users=args.users, follows_per_user=args.follows_per_user, posts_per_user=args.posts_per_user,
                likes_per_post=args.likes_per_post, comments_per_post=args.comments_per_post,
                conversations_per_user=args.conversations_per_user,
                messages_per_conversation=args.messages_per_conversation, active_share=args.active_share,
                images=args.images, seed=args.seed, timelines=not args.no_timelines)
    path = args.manifest or default_manifest(config)
    print(f"seeding {plan.users:,} users into {config.database.url}")
    try:
        report = asyncio.run(seed(config, plan, path, do_reset=args.reset))
    except RuntimeError as exc:
        sys.exit(f"glint bench seed: {exc}")
    for table, count in report.counts.items():
        took = report.seconds.get(f"copy {table}", report.seconds.get(table))
        print(f"  {table:<22} {count:>12,}" + (f"  ({took:.1f} s)" if took is not None else ""))
    for note in report.skipped:
        print(f"  skipped: {note}")
    print(f"seeded in {report.total_seconds:.1f} s; manifest in {path}")


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(f"glint bench: no seed manifest at {path}: run `glint bench seed` first (or pass --manifest)")


def cmd_scenario(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    from bench.runner import Target

    scenario = args.bench_command
    manifest = load_manifest(args.manifest or default_manifest(config))
    targets = [Target(args.label, args.url, manifest)]
    reference = args.reference or args.compare == "reference"
    if args.compare and args.compare != "reference":
        targets.append(Target(args.compare_label, args.compare, manifest))
    with reference_server(config.redis.url) if reference else contextlib.nullcontext() as reference_url:
        if reference_url:
            targets.append(Target(REFERENCE, reference_url, manifest))
        return _run_targets(args, config, scenario, manifest, targets)


REFERENCE = "reference"


@contextlib.contextmanager
def reference_server(redis_url: str):
    """Start bench/reference.py on a free loopback port for the run; yield its URL."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "bench.reference", "--port", str(port), "--redis-url", redis_url],
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/openapi.json", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("glint bench: the reference server did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run_targets(args: argparse.Namespace, config: Any, scenario: str, manifest: dict[str, Any],
                 targets: list) -> dict[str, Any]:
    from bench import report
    from bench.runner import Options, ScenarioSkipped, default_processes, run_scenario

    rounds = args.rounds or (3 if len(targets) > 1 else 1)
    options = Options(duration=args.duration, concurrency=args.concurrency,
                      processes=args.processes or default_processes(), warmup=args.warmup, timeout=args.timeout,
                      jwt_secret=config.auth.jwt_secret, redis_url=config.redis.url, database_url=config.database.url,
                      extra=_parse_sets(args.set))
    print(f"glint bench {scenario}: " + " vs ".join(f"{t.label}={t.url}" for t in targets) +
          f", {rounds} round(s) of {options.duration:g} s, {options.concurrency} clients in {options.processes} processes")
    try:
        runs = asyncio.run(run_scenario(scenario, targets, options, rounds, show_progress=not args.no_progress))
    except ScenarioSkipped as exc:
        sys.exit(f"glint bench {scenario}: skipped: {exc}")
    except ValueError as exc:
        sys.exit(f"glint bench {scenario}: {exc}")
    settings = {"scenario": scenario, "rounds": rounds, "targets": [{"label": t.label, "url": t.url} for t in targets],
                "reference": REFERENCE if targets[-1].label == REFERENCE else None,
                "manifest": {"seeded_at": manifest.get("seeded_at"), "plan": manifest.get("plan")}}
    result = report.build_result(scenario, runs, options, settings)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = report.write_json(result, args.out / f"{scenario}-{stamp}.json")
    png_path = report.plot(result, {run.target.label: dict(run.samples.latencies) for run in runs},
                           args.out / f"{scenario}-{stamp}.png")
    print(report.summary(result))
    print(f"results: {json_path}" + (f", {png_path}" if png_path else " (no PNG: install glint[bench])"))
    return result


def cmd_soak(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    from bench.runner import Options, check_loopback, default_processes
    from bench.soak import soak

    check_loopback(args.url)
    manifest = load_manifest(args.manifest or default_manifest(config))
    options = Options(concurrency=args.concurrency, processes=args.processes or default_processes(), warmup=2.0,
                      timeout=args.timeout, jwt_secret=config.auth.jwt_secret, redis_url=config.redis.url,
                      database_url=config.database.url, extra=_parse_sets(args.set))
    print(f"glint bench soak: {args.url}, {args.minutes} minute(s), {options.concurrency} clients "
          f"in {options.processes} processes")
    result = asyncio.run(soak(args.url, manifest, options, args.minutes, args.minute_seconds))
    path = args.out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    summary = result["summary"]
    print(f"soak: {summary['minutes']} minute(s), {summary['ok']:,} operations, {summary['errors']} errors; "
          f"RSS {summary['rss_start_mb']:.1f} -> {summary['rss_end_mb']:.1f} MB after the first minute "
          f"({summary['rss_growth_after_warmup_mb']:+.1f} MB), fds {summary['fds_start']:.0f} -> "
          f"{summary['fds_end']:.0f} (max {summary['fds_max']:.0f}), p99 median {summary['p99_median_ms']:.1f} ms, "
          f"max {summary['p99_max_ms']:.1f} ms")
    print(f"results: {path}")
    return result


def run(args: argparse.Namespace, config: Any) -> None:
    """Carry out a parsed `glint bench` command with the decoded Config."""
    if args.bench_command == "seed":
        cmd_seed(args, config)
    elif args.bench_command == "soak":
        cmd_soak(args, config)
    elif args.bench_command == "notifications":
        from bench import notifications

        notifications.run_cli(args)
    elif args.bench_command == "chat":
        from bench import chat

        chat.run_cli(args)
    elif args.bench_command == "list":
        for name, summary in SCENARIOS.items():
            print(f"  {name:<10} {summary}")
    else:
        cmd_scenario(args, config)
