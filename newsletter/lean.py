"""Routes answered before Flask: the JSON endpoints that take requests in floods (read
confirmations: one per free story shown, the site's busiest write).

For these, Flask's request machinery (request, session and response objects, the URL
map, hooks) costs the worker more CPU than the answer does. `LeanRoutes` is WSGI
middleware in front of Flask: a request that matches one of its routes is answered by
the route's handler, inside an app context only; everything else goes to Flask
untouched.

A handler gets a `LeanRequest` (its body already read, within the route's `max_body`;
a JSON body is parsed with `newsletter.jsonbody`, as the Flask views do) and returns
(JSON body, status), or None to leave the request to Flask, which then reads the same
body. So every lean
route has a Flask view as well, calling the same function: it answers what a handler
declines (a signed-in reader's read confirmation), what the route refuses to read (no
`Content-Length`, a body over its limit, another content type), and it is what
`newsletter routes` lists. Every answer carries the headers Flask's responses get; an
exception is logged and answered 500 in JSON, and the app context's teardown closes the
database session (rolling back what was not committed), as the app's error handler does.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from http import HTTPStatus
from typing import Any

from flask import Flask
from werkzeug.http import parse_cookie

from newsletter.errors import UNEXPECTED_ERROR
from newsletter.inputs import storable

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
WSGIApp = Callable[[WSGIEnviron, Callable[..., Any]], Iterable[bytes]]
Answer = tuple[dict[str, Any], int]


@dataclass
class LeanRequest:
    environ: WSGIEnviron
    args: tuple[str, ...]  # the route pattern's groups, from the path
    body: bytes

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    @cached_property
    def cookies(self) -> dict[str, str]:
        return parse_cookie(self.environ)  # type: ignore[return-value]


Handler = Callable[[LeanRequest], Answer | None]


@dataclass(frozen=True)
class _Route:
    method: str
    path: re.Pattern[str]
    handler: Handler
    max_body: int
    mimetype: str | None = None  # None: any content type


@dataclass
class LeanRoutes:
    """`app.wsgi_app`, wrapping Flask's; `headers` are added to every answer."""

    app: Flask
    inner: WSGIApp
    headers: list[tuple[str, str]]
    routes: list[_Route] = field(default_factory=list)

    def route(
        self, method: str, pattern: str, handler: Handler, *, max_body: int,
        mimetype: str | None = None,
    ) -> None:  # fmt: skip
        """Answer `method` requests whose whole path matches `pattern` with `handler`.
        Write the pattern so that it matches exactly what the Flask view's rule does."""
        self.routes.append(_Route(method, re.compile(pattern), handler, max_body, mimetype))

    def __call__(self, environ: WSGIEnviron, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = self._read(environ)
        if request is None:
            return self.inner(environ, start_response)
        route, lean = request
        try:
            with self.app.app_context():
                answer = route.handler(lean)
        except Exception:  # as the app's error handler: logged, and a 500 that says so
            log.exception("unhandled error")
            answer = {"error": UNEXPECTED_ERROR}, 500
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(lean.body)  # Flask reads it again
            return self.inner(environ, start_response)
        body, status = answer
        data = json.dumps(body).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *self.headers,
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data]

    def _read(self, environ: WSGIEnviron) -> tuple[_Route, LeanRequest] | None:
        """The route a request is for and the request with its body, or None: Flask's."""
        path = environ.get("PATH_INFO", "")
        for route in self.routes:
            match = route.path.fullmatch(path)
            if match is None or environ.get("REQUEST_METHOD") != route.method:
                continue
            length = environ.get("CONTENT_LENGTH") or ""
            if not path.isascii():  # WSGI gives the path as latin-1; Flask decodes UTF-8
                return None
            if not storable(path):  # Flask's request guard answers it (`refuse_unstorable`)
                return None
            if not length.isdigit() or int(length) > route.max_body:
                return None
            if route.mimetype is not None:
                mimetype = (environ.get("CONTENT_TYPE") or "").partition(";")[0]
                if mimetype.strip().lower() != route.mimetype:
                    return None
            body = environ["wsgi.input"].read(int(length))
            return route, LeanRequest(environ, match.groups(), body)
        return None
