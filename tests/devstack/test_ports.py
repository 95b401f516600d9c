"""The ports a stack is given: free ones all different, the admin's grpc port (+10000) too; a taken one
moves."""

from __future__ import annotations

import itertools

from devstack import ports
from devstack.ports import ADMIN_GRPC_OFFSET, DEFAULT_PORTS, move_taken, resolve_ports


def test_free_ports_picked_for_a_stack_never_name_the_same_port(monkeypatch):
    # picks that collide: the same port twice, and an admin port whose grpc port is a pick already
    singles = itertools.chain([40000, 40000, 40001, 40001], itertools.count(40002))
    pairs = iter([40000 - ADMIN_GRPC_OFFSET, 40001 - ADMIN_GRPC_OFFSET, 31000])
    monkeypatch.setattr(ports, "free_port", lambda: next(singles))
    monkeypatch.setattr(ports, "free_port_pair", lambda offset: next(pairs))
    chosen = resolve_ports({"kafka": 9092}, {})
    assert list(chosen) == list(DEFAULT_PORTS) and chosen["kafka"] == 9092
    everything = [*chosen.values(), chosen["s3_admin"] + ADMIN_GRPC_OFFSET]
    assert len(set(everything)) == len(everything)
    assert chosen["s3_admin"] == 31000  # the first two pairs' grpc ports were picks already


def test_the_defaults_and_recorded_ports_are_kept():
    assert resolve_ports(None, {}) == DEFAULT_PORTS
    assert resolve_ports(None, {"redis": 6400})["redis"] == 6400


def test_a_taken_port_moves_to_a_free_one_and_the_others_stay(listening):
    chosen = resolve_ports({}, {})  # free ones: a default may be someone's stack
    with listening(chosen["redis"]), listening(chosen["s3_admin"] + ADMIN_GRPC_OFFSET):
        moved = move_taken(chosen, DEFAULT_PORTS)
        assert {key for key in chosen if moved[key] != chosen[key]} == {"redis", "s3_admin"}
        assert ports.port_free(moved["redis"]) and ports.port_free(moved["s3_admin"] + ADMIN_GRPC_OFFSET)
    everything = [*moved.values(), moved["s3_admin"] + ADMIN_GRPC_OFFSET]
    assert len(set(everything)) == len(everything)


def test_only_the_movable_ports_move_and_one_named_twice_moves_too(listening):
    chosen = resolve_ports({}, {})
    with listening(chosen["postgres"]):
        assert move_taken(chosen, ["redis", "kafka"]) == chosen  # postgres is not movable: it stays
        twice = {**chosen, "kafka": chosen["redis"]}
        moved = move_taken(twice, ["kafka"])
        assert moved["redis"] == chosen["redis"]
        assert moved["kafka"] not in {port for key, port in twice.items() if key != "kafka"}
