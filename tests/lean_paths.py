"""Posting a body through either path of a route answered before Flask (`newsletter.lean`):
"lean" with a Content-Length, as browsers and Stripe send it, and "flask" without one (a
streamed body), which the lean routes leave to the Flask view."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

VIAS = ("lean", "flask")


def post_via(client: FlaskClient, via: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
    if via == "lean":
        return client.post(path, data=body, headers=headers)
    # As a server passes on a chunked body: no length, the stream ends with the body.
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )


@contextmanager
def lean_answers(app: Flask) -> Iterator[list[str]]:
    """The paths of the requests the lean routes' handlers answered (rather than leaving
    them to Flask), while open."""
    lean = app.extensions["lean_routes"]
    seen: list[str] = []
    original = list(lean.routes)

    def counting(handler: Any) -> Any:
        def handle(request: Any) -> Any:
            answer = handler(request)
            if answer is not None:
                seen.append(request.environ["PATH_INFO"])
            return answer

        return handle

    lean.routes[:] = [dataclasses.replace(r, handler=counting(r.handler)) for r in original]
    try:
        yield seen
    finally:
        lean.routes[:] = original
