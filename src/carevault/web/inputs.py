"""Malformed input is refused with a 400 that says what was wrong, never a server error.

Two parts:

* :class:`ValidTextMiddleware` refuses, before any view runs, a query string or a url-encoded
  form body that is not valid UTF-8 (Django would otherwise replace the bad bytes silently) and
  any of their values holding a NUL or a lone surrogate (PostgreSQL refuses NUL in text, and a
  lone surrogate has no UTF-8 form, so either fails deep inside a view as a 500).
* :func:`parse_json` is the one way a view reads a JSON body. It checks, in this order and
  before the parser builds anything: the size (``CAREVAULT_JSON_MAX_BODY_BYTES``, 1 MB by
  default; 413), valid UTF-8, the nesting depth (at most :data:`MAX_DEPTH`, by scanning the text,
  so 100,000 brackets cost a scan and not a recursion), then parses with every number checked
  (at most :data:`MAX_DIGITS` significant digits, finite) and every string checked (no lone
  surrogate from a ``\\udfff`` escape, no NUL).

Every refusal is an :class:`InputRejected` with a code, a message for the client and a status.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "InputRejected",
    "ValidTextMiddleware",
    "parse_json",
    "text_problem",
]

DEFAULT_MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 32
# 18 digits hold every clinical value and every id this API takes, and stay exact in a float64's
# neighbourhood; the 4,300-digit integers Python accepts (and then cannot turn into floats) do not.
MAX_DIGITS = 18
# A number's whole text (sign, leading zeros, point, exponent): far more than any float needs.
MAX_NUMBER_TEXT = 64


class InputRejected(Exception):
    """Input the server will not take; ``message`` says what was wrong (it quotes no input)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def max_body_bytes() -> int:
    return int(getattr(settings, "JSON_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


# -- text ------------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """What is wrong with ``value`` as stored text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATE.search(value):
        return "contains a lone surrogate (not valid Unicode)"
    return None


# -- JSON ------------------------------------------------------------------------------------------

# A JSON string, unrolled, and ended by the end of the text too: every quote starts a match that
# cannot fail, so the scan stays linear even on an unterminated string full of escaped quotes.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NUMBER_DIGITS = re.compile(r"\d")
# Only a \u escape can put a surrogate or a NUL into a parsed string (the text is valid UTF-8).
_RISKY_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


class _NumberRejected(ValueError):
    pass


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects, brackets inside strings not counted."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    steps = (1 if c in "[{" else -1 for c in brackets)
    return max(accumulate(steps))


def _int(text: str) -> int:
    if len(_NUMBER_DIGITS.findall(text)) > MAX_DIGITS:
        raise _NumberRejected(f"a number has more than {MAX_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    # Significant digits: a float's shortest repr has up to 17, after any leading zeros
    # (0.00012345678901234567 is an ordinary float64 written out).
    mantissa = re.split(r"[eE]", text, maxsplit=1)[0]
    significant = "".join(_NUMBER_DIGITS.findall(mantissa)).lstrip("0")
    if len(significant) > MAX_DIGITS or len(text) > MAX_NUMBER_TEXT:
        raise _NumberRejected(f"a number has more than {MAX_DIGITS} digits")
    value = float(text)
    if not math.isfinite(value):
        raise _NumberRejected("a number is too large (not a finite number)")
    return value


def _constant(text: str) -> Any:
    raise _NumberRejected(f"{text} is not a JSON number")


def _check_strings(value: Any) -> None:
    # Depth is at most MAX_DEPTH here, so recursion is bounded.
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InputRejected("invalid_text", f"a string in the body {problem}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def parse_json(body: bytes | str, *, max_bytes: int | None = None) -> Any:
    """The JSON value in ``body``, or :class:`InputRejected` saying what was wrong with it."""
    limit = max_body_bytes() if max_bytes is None else max_bytes
    if len(body) > limit:
        raise InputRejected("too_large", f"the body is larger than {limit} bytes", 413)
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InputRejected("invalid_json", "the body is not valid UTF-8") from None
    else:
        text = body
    if text_problem(text):  # a str body holding a surrogate or NUL outside any escape
        raise InputRejected("invalid_text", f"the body {text_problem(text)}")
    if _depth(text) > MAX_DEPTH:
        raise InputRejected("too_deep", f"the JSON is nested more than {MAX_DEPTH} levels deep")
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _NumberRejected as exc:
        raise InputRejected("invalid_number", str(exc)) from None
    except json.JSONDecodeError as exc:
        raise InputRejected(
            "invalid_json", f"the body is not valid JSON ({exc.msg} at character {exc.pos})"
        ) from None
    except (ValueError, RecursionError):
        raise InputRejected("invalid_json", "the body is not valid JSON") from None
    if _RISKY_ESCAPE.search(text):
        _check_strings(value)
    return value


# -- the middleware --------------------------------------------------------------------------------


def _raw_problem(raw: str, what: str) -> str | None:
    """``raw`` is a WSGI string (bytes as latin-1): is the url-encoded text valid UTF-8?"""
    try:
        unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        return f"the {what} is not valid UTF-8"
    return None


def _values_problem(data: Any, what: str) -> str | None:
    for key, values in data.lists():
        for text in (key, *values):
            if isinstance(text, str):
                problem = text_problem(text)
                if problem:
                    return f"a {what} value {problem}"
    return None


def request_problem(request: HttpRequest) -> str | None:
    """What makes the request's query string or form body unacceptable text, or None."""
    raw_query = str(request.META.get("QUERY_STRING", ""))
    problem = _raw_problem(raw_query, "query string") or _values_problem(
        request.GET, "query string"
    )
    if problem or request.method != "POST":
        return problem
    if request.content_type == "application/x-www-form-urlencoded":
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not str(declared).isdigit() or int(declared) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return None  # Django refuses an oversized form itself (400)
        body = request.body.decode("latin-1")
        return _raw_problem(body, "form body") or _values_problem(request.POST, "form")
    # Multipart bodies are left to the view: parsing them here would consume the stream (a view
    # reading request.body could not), and Django decodes their text fields with replacement
    # characters, so no lone surrogate comes out of them; the forms refuse NUL.
    return None


def rejection(request: HttpRequest, error: InputRejected) -> HttpResponse:
    """The answer to refused input: JSON for the API and JSON requests, plain text otherwise."""
    wants_json = request.path.startswith("/api/") or "json" in str(
        request.META.get("HTTP_ACCEPT", "") + request.content_type
    )
    if wants_json:
        return JsonResponse(
            {"error": {"code": error.code, "message": error.message}}, status=error.status
        )
    return HttpResponse(
        f"Bad request: {error.message}.\n", status=error.status, content_type="text/plain"
    )


class ValidTextMiddleware:
    """Refuses a request whose query string or form fields are not valid text (400)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = request_problem(request)
        if problem:
            return rejection(request, InputRejected("invalid_text", problem))
        return self.get_response(request)
