"""What a run leaves behind: a JSON result, a PNG, and a one-screen summary table."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.stats import PERCENTILES, figures, pkey, ratios

PACKAGES = ("aiohttp", "asyncpg", "redis", "hiredis", "uvloop", "msgspec", "aiobotocore", "pyvips", "glint")


def machine() -> dict[str, Any]:
    """The machine the run was measured on: cores, memory, OS, Python, package versions, git commit."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    try:
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
        info["cpu_freq_mhz"] = getattr(psutil.cpu_freq(), "current", None)
    except Exception:  # psutil is optional: the figure is missing rather than the run
        info["memory_bytes"] = None
    try:
        # the machine may be shared: a busy one makes every figure worse, so say how busy it was
        info["load_average"] = list(os.getloadavg())
    except OSError:
        info["load_average"] = None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info["packages"] = versions
    info["git"] = git_commit()
    return info


def git_commit(folder: Path | None = None) -> dict[str, Any] | None:
    """The commit of the glint checkout this runs from, and whether its tree has local changes."""
    folder = folder or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _clean(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def build_result(scenario: str, runs: list, options, settings: dict[str, Any]) -> dict[str, Any]:
    """The whole result: settings, machine, every figure of every target, and B/A ratios."""
    targets = []
    for run in runs:
        targets.append({
            "label": run.target.label,
            "url": run.target.url,
            "rounds": run.rounds,
            "figures": figures(run.samples),
            "timeline": [list(t) for t in run.samples.timeline],
        })
    result: dict[str, Any] = {
        "scenario": scenario,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {**settings, "options": dataclasses.asdict(options)},
        "machine": machine(),
        "targets": targets,
    }
    result["settings"]["options"].pop("jwt_secret", None)
    if len(targets) >= 2 and not (len(targets) == 2 and settings.get("reference")):
        result["comparison"] = {"a": targets[0]["label"], "b": targets[1]["label"],
                                "b_over_a": ratios(targets[0]["figures"], targets[1]["figures"])}
    if settings.get("reference"):
        result["ceiling"] = ceiling(targets)
    return _clean(result)


def ceiling(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target's share of the reference ceiling (the last target) in the same run: its
    throughput over the reference's, with its server CPU per operation and bytes per operation."""
    *served, ref = targets
    ref_ops = ref["figures"]["total"]["throughput"] or float("nan")
    out: dict[str, Any] = {}
    for target in [*served, ref]:
        f = target["figures"]
        out[target["label"]] = {
            "share_of_ceiling": f["total"]["throughput"] / ref_ops,
            "throughput": f["total"]["throughput"],
            "server_cpu_ms_per_op": f["gauges"].get("server_cpu_ms_per_op"),
            # the local stores' share of each operation (bench.storecpu), where they were measured
            **{f"{store}_cpu_ms_per_op": f["gauges"][f"{store}_cpu_ms_per_op"] for store in ("postgres", "redis")
               if f"{store}_cpu_ms_per_op" in f["gauges"]},
            "p99_ms": {op: o["latency_ms"]["p99"] for op, o in f["ops"].items()},
            "bytes_per_op": {name.removesuffix("_bytes"): d["p50"] for name, d in f["values"].items()
                             if name.endswith("_bytes")},
        }
    return {"reference": ref["label"], "targets": out}


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def summary(result: dict[str, Any]) -> str:
    """A one-screen table: per target and operation, ops/s, latency percentiles (ms), errors; then
    other measured values, gauges, and the B/A ratios when two targets ran."""
    cols = ["target", "operation", "ops/s", *(pkey(p) + " ms" for p in PERCENTILES), "max ms", "errors"]
    rows = []
    for target in result["targets"]:
        f = target["figures"]
        for op, o in f["ops"].items():
            lat = o["latency_ms"]
            rows.append([target["label"], op, _fmt(o["throughput"]), *(_fmt(lat[pkey(p)], 2) for p in PERCENTILES),
                         _fmt(lat["max"], 1), _fmt(o["errors"])])
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    o = result["settings"]["options"]
    head = (f"glint bench {result['scenario']}: {o['concurrency']} clients in {o['processes']} processes, "
            f"{o['duration']:g} s x {result['settings'].get('rounds', 1)} round(s) per target")
    load = result.get("machine", {}).get("load_average")
    if load:
        head += f"; load average {load[0]:.1f} on {result['machine'].get('cores')} cores"
    out = [head, line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows]
    for target in result["targets"]:
        f = target["figures"]
        for name, d in f["values"].items():
            out.append(f"{target['label']}: {name}: n={d['count']:,} " +
                       " ".join(f"{pkey(p)}={_fmt(d[pkey(p)], 3)}" for p in PERCENTILES) + f" max={_fmt(d['max'], 3)}")
        for name, v in f["gauges"].items():
            out.append(f"{target['label']}: {name} = {_fmt(v, 1)}")
        errs = {op: o["error_kinds"] for op, o in f["ops"].items() if o["error_kinds"]}
        if errs:
            out.append(f"{target['label']}: error kinds: {errs}")
    comparison = result.get("comparison")
    if comparison:
        r = comparison["b_over_a"]
        out.append(f"ratio {comparison['b']} / {comparison['a']} (throughput > 1 and latency < 1 mean B is better): "
                   f"total ops/s x{_fmt(r['total_throughput'], 2)}")
        for op, row in r["ops"].items():
            out.append(f"  {op}: ops/s x{_fmt(row['throughput'], 2)}  " +
                       "  ".join(f"{k} x{_fmt(row[k], 2)}" for k in (pkey(p) for p in PERCENTILES)))
        for name, row in r.get("values", {}).items():
            out.append(f"  {name}: " + "  ".join(f"{k} x{_fmt(v, 2)}" for k, v in row.items()))
        for name, v in r.get("gauges", {}).items():
            out.append(f"  {name}: x{_fmt(v, 2)}")
    ceiling_ = result.get("ceiling")
    if ceiling_:
        out.append(f"share of the reference ceiling ({ceiling_['reference']}, same run):")
        for label, row in ceiling_["targets"].items():
            if label != ceiling_["reference"]:
                stores = "".join(f", {title} {_fmt(row[key], 3)}" for key, title in
                                 (("postgres_cpu_ms_per_op", "PostgreSQL"), ("redis_cpu_ms_per_op", "Redis")) if key in row)
                out.append(f"  {label}: {_fmt(100 * row['share_of_ceiling'], 1)} % of its throughput, "
                           f"server CPU {_fmt(row['server_cpu_ms_per_op'], 3)} ms per op{stores}, "
                           f"bytes per op {row['bytes_per_op']}, p99 ms {row['p99_ms']}")
    return "\n".join(out)


def plot(result: dict[str, Any], latencies: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """A PNG: the latency distribution (CDF, log scale) of each target's operations, and
    throughput over time. `latencies` maps target label -> op -> raw seconds. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(13, 5))
    for label, ops in latencies.items():
        for op, values in ops.items():
            ordered = sorted(values)
            if not ordered:
                continue
            n = len(ordered)
            step = max(1, n // 2000)
            xs = [ordered[i] * 1000 for i in range(0, n, step)] + [ordered[-1] * 1000]
            ys = [i / n * 100 for i in range(0, n, step)] + [100.0]
            ax_lat.plot(xs, ys, label=f"{label} {op}")
    ax_lat.set_xscale("log")
    ax_lat.set_xlabel("latency (ms, log scale)")
    ax_lat.set_ylabel("% of requests at or below")
    ax_lat.set_title("latency distribution")
    for p in PERCENTILES:
        ax_lat.axhline(p, color="grey", linewidth=0.5, linestyle=":")
    ax_lat.grid(True, which="both", alpha=0.3)
    if ax_lat.lines:
        ax_lat.legend(fontsize="small")
    for target in result["targets"]:
        timeline = target["timeline"]
        if timeline:
            ax_tp.plot([t[0] for t in timeline], [t[1] for t in timeline], label=f"{target['label']} ok/s")
            if any(t[2] for t in timeline):
                ax_tp.plot([t[0] for t in timeline], [t[2] for t in timeline], linestyle="--",
                           label=f"{target['label']} errors/s")
    ax_tp.set_xlabel("seconds of measured load (rounds back to back)")
    ax_tp.set_ylabel("operations per second")
    ax_tp.set_title("throughput over time")
    ax_tp.grid(True, alpha=0.3)
    if ax_tp.lines:
        ax_tp.legend(fontsize="small")
    fig.suptitle(f"glint bench {result['scenario']} ({result['finished_at']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
