"""What a value must be before any store sees it: ids and counters inside PostgreSQL's bigint,
text that PostgreSQL (and Redis keys, and JSON) can hold: valid UTF-8 with no NUL.

The edge (app/ middlewares for HTTP, the frame codec for the websocket, the Structs of handlers/)
checks these, so a hostile value is a 400 or an `error` frame for its sender and never reaches a
batched statement where it would fail everyone else's rows.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

import emoji as unicode_emoji

BIGINT_MAX = 2**63 - 1


def _up_to(bound: int) -> str:
    """A regular expression matching exactly the decimal numbers 1..bound (no leading zeros)."""
    digits = str(bound)
    shorter = f"[1-9][0-9]{{0,{len(digits) - 2}}}"
    alternatives = [shorter]
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            alternatives.append(f"{digits[:i]}[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "^(?:" + "|".join(alternatives) + ")$"


# a 64-bit id as a string: 1 .. 9223372036854775807, exactly
ID_PATTERN = _up_to(BIGINT_MAX)
_ID = re.compile(ID_PATTERN)

# a JSON \u0000 escape: after an even number of backslashes (an odd one escapes the backslash)
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def is_id(text: str) -> bool:
    """Is this a 64-bit id as a decimal string?"""
    return _ID.match(text) is not None


def bad_text(data: bytes) -> str | None:
    """Why these bytes (a JSON document, a frame) cannot become stored text: not UTF-8, or a NUL
    (raw or escaped); None when they can."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "The text is not valid UTF-8."
    if b"\x00" in data or (b"\\" in data and _NUL_ESCAPE.search(data)):
        return "The text holds a NUL character."
    return None


def bad_str(text: str) -> str | None:
    """The same check for an already decoded string (headers, a percent-decoded URL)."""
    if text.isascii():
        return "The text holds a NUL character." if "\x00" in text else None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, as undecodable bytes arrive
        return "The text is not valid UTF-8."
    return "The text holds a NUL character." if "\x00" in text else None


def bad_url(raw: str) -> str | None:
    """The same check for a raw path and query string, once percent-decoded."""
    if "%" not in raw:
        return bad_str(raw)
    return bad_text(unquote_to_bytes(raw.replace("+", " ")))


# msgspec's wording of a bound or a type, as a person would put it: "Expected `str` of length >= 8"
_PLAIN = [
    (re.compile(r"^Expected `str` of length >= (\d+)$"), "At least {} characters."),
    (re.compile(r"^Expected `str` of length <= (\d+)$"), "At most {} characters."),
    (re.compile(r"^Expected `array` of length >= (\d+)$"), "At least {} items."),
    (re.compile(r"^Expected `array` of length <= (\d+)$"), "At most {} items."),
    (re.compile(r"^Expected `(?:int|float)` >= (\S+)$"), "At least {}."),
    (re.compile(r"^Expected `(?:int|float)` <= (\S+)$"), "At most {}."),
    (re.compile(r"^Expected `str`, got `\w+`$"), "Text expected."),
    (re.compile(r"^Expected `str` matching regex "), "Not in the form expected."),
    (re.compile(r"^Expected `int`, got `\w+`$"), "A whole number expected."),
    (re.compile(r"^Expected `bool`, got `\w+`$"), "true or false expected."),
    (re.compile(r"^Expected `object`, got `\w+`$"), "An object expected."),
    (re.compile(r"^Expected `array`, got `\w+`$"), "A list expected."),
]


def plainly(message: str) -> str:
    """msgspec's message of a refused value (without its " - at `$...`" part) in plain words,
    where it is one of the common ones; REST's field errors and the websocket's error frames both
    say it so."""
    for pattern, plain in _PLAIN:
        if (match := pattern.match(message)) is not None:
            return plain.format(*match.groups())
    return message


def field_problem(text: str) -> tuple[str | None, str]:
    """A msgspec ValidationError's text as the field it names (None: the value as a whole) and
    what is wrong with it in plain words: ("password", "At least 8 characters.")."""
    if " - at `$." in text:
        message, _, where = text.partition(" - at `$.")
        return where.rstrip("`").split("[")[0], plainly(message)
    if text.startswith("Object missing required field `"):
        return text.split("`")[1], "This field is required."
    if text.startswith("Object contains unknown field `"):
        return text.split("`")[1], "Unknown field."
    return None, plainly(text)


def plain_validation(text: str) -> str:
    """A msgspec ValidationError's text in plain words, naming its field: "password: At least 8 characters."."""
    name, problem = field_problem(text)
    return problem if name is None else f"{name}: {problem}"


# characters drawn as nothing that are neither whitespace nor format characters (Cf): the Hangul
# fillers and the blank Braille pattern, a favourite of empty-looking names and messages
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """Whether a text shows nothing: only whitespace and invisible characters (the zero-width
    space and joiners, bidi marks and other format characters, the fillers of _BLANKS)."""
    return all(c.isspace() or c in _BLANKS or unicodedata.category(c) == "Cf" for c in text)


def is_emoji(text: str) -> bool:
    """Is this exactly one emoji, as Unicode's emoji data has it (a skin tone, a flag or a family
    joined by zero-width joiners included): what a reaction may be."""
    return unicode_emoji.is_emoji(text)
