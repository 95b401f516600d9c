"""Every integer, string, list and map a client can send, in a REST body or a websocket frame,
has limits in its type, so nothing unbounded reaches a store."""

from __future__ import annotations

from msgspec import inspect as mi

from app.main import ROUTE_MODULES
from realtime import frames
from storage.bounds import BIGINT_MAX, is_id


def unbounded(t, where: str, seen: set) -> list[str]:
    """Where in this type a value has no limit."""
    if isinstance(t, mi.StructType):
        if t.cls in seen:
            return []
        seen.add(t.cls)
        return [w for f in t.fields for w in unbounded(f.type, f"{t.cls.__name__}.{f.name}", seen)]
    if isinstance(t, mi.UnionType):
        return [w for x in t.types for w in unbounded(x, where, seen)]
    if isinstance(t, mi.StrType):
        return [] if t.max_length is not None or t.pattern is not None else [f"{where}: str"]
    if isinstance(t, mi.IntType):
        low, high = t.ge if t.ge is not None else t.gt, t.le if t.le is not None else t.lt
        return [] if low is not None and high is not None and high <= BIGINT_MAX else [f"{where}: int"]
    if isinstance(t, mi.FloatType):
        return [] if (t.le is not None or t.lt is not None) else [f"{where}: float"]
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        return ([] if t.max_length is not None else [f"{where}: list"]) + unbounded(t.item_type, where + "[]", seen)
    if isinstance(t, mi.DictType):
        return (([] if t.max_length is not None else [f"{where}: dict"]) + unbounded(t.key_type, where + "{key}", seen)
                + unbounded(t.value_type, where + "{value}", seen))
    return []


def test_every_body_and_frame_field_has_limits():
    seen: set = set()
    problems = [w for module in ROUTE_MODULES for doc in module.docs if doc.body is not None
                for w in unbounded(mi.type_info(doc.body), f"{doc.method} {doc.path}", seen)]
    problems += unbounded(mi.type_info(frames.AnyClientFrame), "frame", seen)
    assert problems == []


def test_the_id_pattern_is_exactly_one_to_two_to_the_63_minus_one():
    assert is_id("1") and is_id(str(BIGINT_MAX)) and is_id("1000000000000000000")
    for bad in ("0", "01", str(BIGINT_MAX + 1), "9999999999999999999", "-1", "1e3", " 1", "١", "²"):
        assert not is_id(bad), bad
