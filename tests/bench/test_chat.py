"""bench/chat.py end to end with tiny numbers: its own stack, real `glint serve` processes, worker
processes for the load; the closed-loop pairs and the group fan-out, and a comparison of two trees."""

from __future__ import annotations

from bench import chat
from bench.trees import ROOT


def test_closed_loop_pairs_report_throughput_latency_and_cpu_on_one_process():
    report = chat.run(chat.arguments(["--pairs", "2", "--servers", "1", "--workers", "1", "--warmup", "0.5",
                                      "--duration", "1.5", "--presence", "0"]))
    assert report["mode"] == "pairs" and report["pairs"] == 2 and report["servers"] == 1
    assert report["acked"] > 0 and report["received"] > 0 and report["messages_per_s"] > 0
    assert report["errors"] == 0 and report["lost"] == 0
    # closed loops: a sender waits for each delivery, so at most one message per pair is in flight
    assert report["sent"] - report["received"] <= 2
    assert 0 < report["send_to_receive_ms"]["p50"] <= report["send_to_receive_ms"]["p99"]
    assert report["send_to_ack_ms"]["p50"] > 0
    assert report["glint_cpu_s_per_1000_messages"] > 0 and report["machine_cpu_s_per_1000_messages"] > 0


def test_group_fan_out_to_every_member_over_two_processes_against_another_tree():
    # this tree stands in for the older checkout: the comparison's machinery, not its figures
    report = chat.run(chat.arguments(["--group", "5", "--rate", "20", "--duration", "1.5", "--presence", "0",
                                      "--compare", str(ROOT), "--rounds", "1"]))
    assert [t["label"] for t in report["targets"]] == ["A", "B"]
    for target in report["targets"]:
        (row,) = target["rounds"]
        assert row["mode"] == "group" and row["members"] == 5 and row["servers"] == 2
        assert row["acked"] > 0 and row["complete"] > 0 and row["errors"] == 0
        assert row["received"] >= 4 * row["complete"]  # every other member got each complete message
        assert 0 < row["send_to_last_member_ms"]["p50"] <= row["send_to_last_member_ms"]["max"]
        assert row["ack_to_last_member_ms"]["max"] is not None
        assert row["glint_cpu_s_per_1000_deliveries"] > 0
        assert target["median"]["messages_per_s"] > 0 and target["median"]["send_to_last_member_ms.p99"] > 0
    ratios = report["comparison"]["a_over_b"]
    assert ratios["messages_per_s"] > 0 and ratios["send_to_last_member_ms.p99"] > 0
