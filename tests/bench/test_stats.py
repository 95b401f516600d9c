"""The harness's figures and reports: percentiles, merging workers and rounds, ratios, the JSON,
the summary table and the PNG."""

from __future__ import annotations

import json
import math
import time

from bench import report
from bench.runner import Options, Target, TargetRun, check_loopback
from bench.stats import Recorder, Samples, distribution, figures, percentile, ratios


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 1001))
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99) == 990.0
    assert percentile(values, 99.9) == 999.0
    assert percentile([7.0], 99.9) == 7.0
    assert math.isnan(percentile([], 50))


def test_distribution_scales_to_milliseconds():
    d = distribution([0.001, 0.002, 0.003, 0.004], scale=1000.0)
    assert d["count"] == 4
    assert d["p50"] == 2.0 and d["max"] == 4.0 and d["mean"] == 2.5


def _dump(latencies: list[float], errors: int = 0, t0: float | None = None) -> dict:
    recorder = Recorder(t0 if t0 is not None else time.time())
    for value in latencies:
        recorder.record("feed", value)
    for _ in range(errors):
        recorder.record("feed", 0.5, "http_500")
    return recorder.dump()


def test_samples_merge_workers_and_rounds_into_throughput_and_errors():
    samples = Samples()
    samples.add([_dump([0.01] * 100), _dump([0.02] * 100, errors=5)], elapsed=2.0)
    samples.add([_dump([0.03] * 200)], elapsed=2.0, offset=2.0)
    f = figures(samples)
    assert f["ops"]["feed"]["throughput"] == 400 / 4.0
    assert f["ops"]["feed"]["errors"] == 5
    assert f["ops"]["feed"]["error_kinds"] == {"http_500": 5}
    assert f["ops"]["feed"]["latency_ms"]["p50"] == 20.0
    assert f["total"]["error_rate"] == 5 / 405
    assert samples.timeline[-1][0] >= 2.0  # the second round is placed after the first


def test_ratios_are_b_over_a():
    a, b = Samples(), Samples()
    a.add([_dump([0.02] * 100)], elapsed=1.0)
    b.add([_dump([0.01] * 200)], elapsed=1.0)
    r = ratios(figures(a), figures(b))
    assert r["total_throughput"] == 2.0
    assert r["ops"]["feed"]["p50"] == 0.5


def test_result_json_summary_and_png(tmp_path):
    runs = []
    for label, latency in (("A", 0.02), ("B", 0.01)):
        run = TargetRun(Target(label, "http://127.0.0.1:1", {}))
        run.samples.add([_dump([latency] * 50 + [latency * 10])], elapsed=1.0)
        run.rounds.append({"round": 1, "ok": 51, "errors": 0, "throughput": 51.0})
        runs.append(run)
    options = Options(duration=1.0, concurrency=4, processes=1, jwt_secret="secret")
    result = report.build_result("feed", runs, options, {"rounds": 1})
    path = report.write_json(result, tmp_path / "r.json")
    loaded = json.loads(path.read_text())
    assert loaded["machine"]["cores"] >= 1 and "python" in loaded["machine"] and "packages" in loaded["machine"]
    assert "jwt_secret" not in loaded["settings"]["options"]  # a secret never lands in a result file
    assert loaded["targets"][0]["figures"]["ops"]["feed"]["latency_ms"]["p99"] == 200.0
    assert loaded["comparison"]["b_over_a"]["ops"]["feed"]["p50"] == 0.5
    table = report.summary(loaded)
    assert "p999 ms" in table and "ratio B / A" in table
    assert len(table.splitlines()) < 40  # one screen
    png = report.plot(loaded, {r.target.label: dict(r.samples.latencies) for r in runs}, tmp_path / "r.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_ceiling_is_each_targets_share_of_the_reference_in_the_same_run():
    runs = []
    for label, ok, cpu in (("new", 50, 0.5), ("old", 25, 1.0), ("reference", 100, 0.25)):
        run = TargetRun(Target(label, "http://127.0.0.1:1", {}))
        run.samples.add([_dump([0.01] * ok)], elapsed=1.0)
        run.samples.gauges["server_cpu_ms_per_op"] = cpu
        runs.append(run)
    options = Options(duration=1.0, concurrency=4, processes=1)
    result = report.build_result("feed", runs, options, {"rounds": 1, "reference": "reference"})
    ceiling = result["ceiling"]["targets"]
    assert (ceiling["new"]["share_of_ceiling"], ceiling["old"]["share_of_ceiling"]) == (0.5, 0.25)
    assert ceiling["new"]["server_cpu_ms_per_op"] == 0.5 and result["comparison"]["b"] == "old"
    assert "share of the reference ceiling" in report.summary(result)


def test_only_loopback_targets_are_accepted():
    check_loopback("http://127.0.0.1:8080")
    check_loopback("http://localhost:8080")
    for url in ("http://10.0.0.1:8080", "http://192.168.1.1/"):
        try:
            check_loopback(url)
        except ValueError:
            continue
        raise AssertionError(f"{url} was accepted")


def test_locustfile_compiles():
    import pathlib
    import py_compile

    path = pathlib.Path(__file__).resolve().parents[2] / "bench" / "locustfile.py"
    py_compile.compile(str(path), doraise=True)


def test_glint_bench_lists_its_scenarios(capsys):
    from app.cli import main

    main(["bench", "list"])
    out = capsys.readouterr().out
    for name in ("feed", "fanout", "messages", "capacity", "media", "search", "mixed"):
        assert name in out
