"""Figures from raw samples: latency percentiles, throughput, errors, and their ratios.

A worker records every operation it times (name, latency, ok or an error kind) in a Recorder; the
parent merges the recorders of all workers and rounds into one Figures per operation. Latencies
are kept raw (a float per request: 300,000 requests are 2.4 MB), so percentiles are exact, not
bucketed.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: list[float] | array, p: float) -> float:
    """The nearest-rank percentile of values already sorted ascending (NaN when there are none)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = max(1, math.ceil(p * n / 100.0 - 1e-9))  # 99.9 * 1000 / 100 is 999.0000000000001 in floats
    return float(sorted_values[min(rank, n) - 1])


def pkey(p: float) -> str:
    """The JSON name of a percentile: 50 -> p50, 99.9 -> p999."""
    return "p" + f"{p:g}".replace(".", "")


class Recorder:
    """What one worker saw: latencies per operation, error kinds, and completions per second.

    `t0` is a wall-clock time shared by every worker of a run, so their per-second buckets line up.
    """

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.time() if t0 is None else t0
        self.latencies: dict[str, array] = {}
        self.errors: dict[str, Counter] = {}
        self.seconds: dict[int, list[int]] = {}  # second since t0 -> [ok, errors]
        self.values: dict[str, array] = {}  # other per-event figures (e.g. fan-out seconds)
        self.gauges: dict[str, float] = {}  # single figures (e.g. sockets held)
        self.pending_ok = 0
        self.pending_errors = 0

    def record(self, op: str, seconds: float, error: str | None = None) -> None:
        """One finished operation: its latency, and the kind of its error if it failed."""
        bucket = self.seconds.setdefault(int(time.time() - self.t0), [0, 0])
        if error is None:
            self.latencies.setdefault(op, array("d")).append(seconds)
            bucket[0] += 1
            self.pending_ok += 1
        else:
            self.errors.setdefault(op, Counter())[error] += 1
            bucket[1] += 1
            self.pending_errors += 1

    def value(self, name: str, value: float) -> None:
        """A figure measured per event that is not a request latency (a distribution is reported)."""
        self.values.setdefault(name, array("d")).append(value)

    def take_progress(self) -> tuple[int, int]:
        """Completions and errors since the last call (for the progress bar)."""
        out = (self.pending_ok, self.pending_errors)
        self.pending_ok = self.pending_errors = 0
        return out

    def dump(self) -> dict:
        """A picklable form, sent from a worker process to the parent."""
        return {"t0": self.t0, "latencies": {k: v.tobytes() for k, v in self.latencies.items()},
                "errors": {k: dict(v) for k, v in self.errors.items()},
                "seconds": {k: list(v) for k, v in self.seconds.items()},
                "values": {k: v.tobytes() for k, v in self.values.items()},
                "gauges": dict(self.gauges)}


@dataclass
class Samples:
    """Every sample of one target, merged over workers and rounds."""

    latencies: dict[str, array] = field(default_factory=dict)
    errors: dict[str, Counter] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (second since start, ok, errors)
    values: dict[str, array] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0  # seconds of measured load, summed over rounds

    def add(self, dumps: Iterable[dict], elapsed: float, offset: float = 0.0) -> None:
        """Merge the workers' dumps of one round that lasted `elapsed` seconds; its timeline is
        placed `offset` seconds after the start of the first round of this target."""
        seconds: Counter = Counter()
        failed: Counter = Counter()
        for dump in dumps:
            for op, raw in dump["latencies"].items():
                values = array("d")
                values.frombytes(raw)
                self.latencies.setdefault(op, array("d")).extend(values)
            for op, kinds in dump["errors"].items():
                self.errors.setdefault(op, Counter()).update(kinds)
            for second, (ok, err) in dump["seconds"].items():
                seconds[int(second)] += ok
                failed[int(second)] += err
            for name, raw in dump["values"].items():
                values = array("d")
                values.frombytes(raw)
                self.values.setdefault(name, array("d")).extend(values)
            for name, value in dump["gauges"].items():
                self.gauges[name] = self.gauges.get(name, 0.0) + value
        for second in sorted(set(seconds) | set(failed)):
            self.timeline.append((offset + second, seconds[second], failed[second]))
        self.elapsed += elapsed


def distribution(values: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """count, mean, the percentiles and max of values (times `scale`, e.g. 1000 for ms)."""
    ordered = sorted(values)
    out: dict[str, float] = {"count": len(ordered)}
    out["mean"] = (sum(ordered) / len(ordered) * scale) if ordered else math.nan
    for p in PERCENTILES:
        out[pkey(p)] = percentile(ordered, p) * scale
    out["max"] = (ordered[-1] * scale) if ordered else math.nan
    return out


def figures(samples: Samples) -> dict:
    """Every figure of a target: per operation throughput, latency (ms) and errors; the totals;
    the per-event values' distributions; the gauges."""
    elapsed = samples.elapsed or math.nan
    ops = {}
    total_ok = total_err = 0
    for op in sorted(set(samples.latencies) | set(samples.errors)):
        lat = samples.latencies.get(op, array("d"))
        errors = dict(samples.errors.get(op, {}))
        n_err = sum(errors.values())
        total_ok += len(lat)
        total_err += n_err
        ops[op] = {"throughput": len(lat) / elapsed, "latency_ms": distribution(lat, 1000.0),
                   "errors": n_err, "error_kinds": errors}
    return {
        "elapsed_s": samples.elapsed,
        "total": {"ok": total_ok, "errors": total_err, "throughput": total_ok / elapsed,
                  "error_rate": (total_err / (total_ok + total_err)) if (total_ok + total_err) else 0.0},
        "ops": ops,
        "values": {name: distribution(v) for name, v in sorted(samples.values.items())},
        "gauges": dict(sorted(samples.gauges.items())),
    }


def _ratio(b: float, a: float) -> float:
    if a is None or b is None or not a or math.isnan(a) or math.isnan(b):
        return math.nan
    return b / a


def ratios(a: dict, b: dict) -> dict:
    """B / A for throughput and each latency percentile of the operations both targets ran."""
    out: dict = {"total_throughput": _ratio(b["total"]["throughput"], a["total"]["throughput"]), "ops": {}}
    for op in sorted(set(a["ops"]) & set(b["ops"])):
        fa, fb = a["ops"][op], b["ops"][op]
        row = {"throughput": _ratio(fb["throughput"], fa["throughput"])}
        for p in PERCENTILES:
            row[pkey(p)] = _ratio(fb["latency_ms"][pkey(p)], fa["latency_ms"][pkey(p)])
        out["ops"][op] = row
    for name in sorted(set(a["values"]) & set(b["values"])):
        out.setdefault("values", {})[name] = {pkey(p): _ratio(b["values"][name][pkey(p)], a["values"][name][pkey(p)])
                                              for p in PERCENTILES}
    for name in sorted(set(a["gauges"]) & set(b["gauges"])):
        out.setdefault("gauges", {})[name] = _ratio(b["gauges"][name], a["gauges"][name])
    return out
