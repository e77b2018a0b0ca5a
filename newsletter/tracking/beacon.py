"""Read confirmations answered before Flask.

Every free story shown sends one (`static/story.js`): it is the site's busiest write, and
Flask's machinery around it (request, session and response objects, routing, hooks) costs
the worker more CPU than the answer itself. This WSGI middleware answers the plain case
with the view's own function (`views.answer_confirmation`) and the headers every response
gets (`app.security_headers`). It hands everything else to Flask untouched: a request with
a session cookie (only Flask's session knows who is signed in), a body that is not a small
`application/json` one, any other path or method.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask
from werkzeug.http import parse_cookie

from newsletter.app import UNEXPECTED_ERROR, security_headers
from newsletter.tracking.views import READING_COOKIE, answer_confirmation, reading_viewer

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PATH = re.compile(r"/stories/([^/]+)/read")  # the view's route, `<slug>` being [^/]+
_MAX_BODY = 4096  # a token is ~60 bytes; a larger body is Flask's to answer


class ReadConfirmations:
    """`POST /stories/<slug>/read`, answered as the Flask view would answer it."""

    def __init__(self, app: Flask, inner: WSGIApp) -> None:
        self.app = app
        self.inner = inner
        self.session_cookie = app.config["SESSION_COOKIE_NAME"]
        hsts = app.config["SESSION_COOKIE_SECURE"]
        self.headers = [
            ("Content-Type", "application/json"),
            *security_headers(set(), None, hsts=hsts),
        ]

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self.inner(environ, start_response)
        slug = match.group(1)
        length = environ.get("CONTENT_LENGTH") or ""
        mimetype = (environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()
        cookies = parse_cookie(environ)
        if (
            not slug.isascii()  # Flask decodes a path as UTF-8; WSGI gives it as latin-1
            or not length.isdigit()
            or int(length) > _MAX_BODY
            or mimetype != "application/json"
            or self.session_cookie in cookies
        ):
            return self.inner(environ, start_response)
        try:
            payload = json.loads(environ["wsgi.input"].read(int(length)))
        except ValueError:  # as Flask's get_json(silent=True): no payload
            payload = None
        token = payload.get("token") if isinstance(payload, dict) else None
        try:
            with self.app.app_context():
                viewer_id, _ = reading_viewer(cookies.get(READING_COOKIE))
                body, status = answer_confirmation(
                    slug, token, environ.get("HTTP_USER_AGENT"), viewer_id
                )
        except Exception:  # as the app's error handler: logged, and a 500 that says so
            log.exception("unhandled error")
            body, status = {"error": UNEXPECTED_ERROR}, 500
        data = json.dumps(body).encode()
        headers = [*self.headers, ("Content-Length", str(len(data)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data]
