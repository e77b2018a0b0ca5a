"""The one reader of JSON request bodies. Every route that takes JSON (read confirmations
and the Stripe webhook, before Flask and in it; `POST /api/stories`) parses its body with
`parse_json_body`, so all of them refuse the same things the same way: `BadJson`, which
the route answers with its `status_code` (400, or 413 for size) and `{"error": message}`.

What is refused: a body over the route's size limit; anything but UTF-8 (RFC 8259 §8.1);
nesting deeper than `MAX_DEPTH` (CPython's parser recurses once per level and raises
RecursionError, and whatever walks the document next would recurse as deep); NaN and
Infinity, and numbers that overflow a float; integers over Python's 4,300 digits.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from newsletter.errors import InvalidInput

# Stripe's events nest about ten levels, the stories format five, a confirmation one.
MAX_DEPTH = 64


class BadJson(InvalidInput):
    """A JSON body the app refuses: answer `status_code` with `{"error": message}`."""


class JsonTooLarge(BadJson):
    status_code = 413


def too_large(max_bytes: int) -> JsonTooLarge:
    return JsonTooLarge(f"The body is larger than {max_bytes} bytes.")


# A JSON string, or an unterminated one to the end: matching either keeps the scan linear
# (a failed match would be retried from every later quote).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_STEP = [0] * 256
for _byte in b"[{":
    _STEP[_byte] = 1
for _byte in b"]}":
    _STEP[_byte] = -1


def _outside_strings(raw: bytes) -> bytes:
    if b"\\" in raw:
        return _STRING.sub(b"", raw)
    # No escapes: every quote opens or closes a string.
    return b"".join(raw.split(b'"')[0::2])


def nesting_depth(raw: bytes) -> int:
    """How deep the arrays and objects of a JSON document nest: exact for valid JSON, and
    for a truncated one how deep the parser would go before it fails."""
    brackets = _outside_strings(raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def parse_json_body(raw: bytes, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in a request body, or `BadJson` saying what is wrong with it.
    `max_bytes` None: the body was read within a limit already."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise too_large(max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJson("The body is not UTF-8 text.") from None
    # Counting is cheap and settles small bodies; only a body with more brackets than
    # `max_depth` needs its depth measured.
    if raw.count(b"[") + raw.count(b"{") > max_depth and nesting_depth(raw) > max_depth:
        raise BadJson(f"The JSON is nested too deeply (more than {max_depth} levels).")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"Not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except RecursionError:  # unreachable past the depth check; never let it become a 500
        raise BadJson(f"The JSON is nested too deeply (more than {max_depth} levels).") from None
    except ValueError as exc:  # a hook's refusal, or an integer over 4,300 digits
        raise BadJson(f"Not valid JSON: {exc}.") from None


def request_body(max_bytes: int) -> bytes:
    """Flask: the request's raw body, at most `max_bytes` (also when it is sent without a
    Content-Length), else `JsonTooLarge`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    request.max_content_length = max_bytes
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise too_large(max_bytes) from None


def request_json(max_bytes: int, *, max_depth: int = MAX_DEPTH) -> Any:
    """Flask: the request's JSON body (`request_body`, then `parse_json_body`)."""
    return parse_json_body(request_body(max_bytes), max_bytes=max_bytes, max_depth=max_depth)


def error_answer(exc: BadJson) -> tuple[dict[str, Any], int]:
    return {"error": exc.message}, exc.status_code
