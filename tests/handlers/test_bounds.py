"""Every integer, string, list and map a client can send, in a REST body or a websocket frame,
has limits in its type, so nothing unbounded reaches a store."""

from __future__ import annotations

from msgspec import inspect as mi

from app.main import ROUTE_MODULES
from realtime import frames
from storage.bounds import BIGINT_MAX, is_blank, is_id


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


def test_text_that_shows_nothing_is_blank_and_text_that_shows_something_is_not():
    for blank in ("", " \n\t", "\u200b", "\u200d\u200b\ufeff", "\u3164", "\u2800 ", "\u115f\u1160", "\u202e"):
        assert is_blank(blank), repr(blank)
    for shown in ("a", "\u200bhi", "👍", "\u200d👨", "١", "."):
        assert not is_blank(shown), repr(shown)


async def test_a_comment_message_or_location_of_invisible_characters_is_refused_and_nothing_is_written(client, pool):
    from tests.support import new_media, new_post, start_conversation, user_and_token, user_with_token

    user, headers = await user_with_token(client)
    post = await new_post(client, headers)
    invisible = "\u200b\u3164\u2800"
    comment = await client.post("/api/comments/", json={"post_id": post["id"], "text": invisible}, headers=headers)
    assert comment.status == 400 and (await comment.json())["error"]["fields"] == {"text": "May not be blank."}
    located = await client.post("/api/posts/", json={"caption": "", "media_ids": await new_media(client, headers),
                                                     "location": {"name": invisible}}, headers=headers)
    assert located.status == 400 and (await located.json())["error"]["fields"] == {"location.name": "Name the place."}
    other, token = await user_and_token(client)
    conversation = await start_conversation(client, token, user["id"])
    message = await client.post(f"/api/conversations/{conversation['id']}/messages/",
                                json={"client_id": "c1", "text": invisible}, headers={"Authorization": f"Bearer {token}"})
    assert message.status == 400 and (await message.json())["error"]["fields"] == {"text": "Send text or media."}
    assert await pool.fetchval("SELECT count(*) FROM comments") == 0
    assert await pool.fetchval("SELECT count(*) FROM posts") == 1
    assert await pool.fetchval("SELECT count(*) FROM messages") == 0
