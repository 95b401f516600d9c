"""Pagination's shared pieces: every list's `next` link and the one cursor error."""

import pytest
from aiohttp.test_utils import make_mocked_request

from handlers.common import InvalidCursor, decode_cursor, encode_cursor, id_string_cursor, make_page, next_link


def test_next_link_keeps_the_query_and_puts_in_the_cursor_and_page_size():
    request = make_mocked_request("GET", "/api/things/?q=a&cursor=old&limit=5")
    assert next_link(request, 5, cursor="new") == "/api/things/?q=a&cursor=new&limit=5"
    page = make_page(request, [1, 2, 3], 2, str)
    assert (page.results, page.next) == ([1, 2], "/api/things/?q=a&cursor=2&limit=2")
    assert make_page(request, [1, 2], 2, str).next is None
    by_seq = make_page(make_mocked_request("GET", "/api/m/"), [9, 8, 7], 2, str, param="before")
    assert by_seq.next == "/api/m/?before=8&limit=2"


@pytest.mark.parametrize("cursor", ["%%%", "x" * 600, encode_cursor(1, 2), encode_cursor(-1), encode_cursor("1")])
def test_every_bad_cursor_is_the_one_error(cursor):
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, int)


def test_an_id_string_cursor():
    assert id_string_cursor(None) is None
    assert id_string_cursor(encode_cursor("42")) == 42
    with pytest.raises(InvalidCursor):
        id_string_cursor(encode_cursor(42))
