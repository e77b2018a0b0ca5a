"""The outermost WSGI layer: a request id for every request, and its count and time.

The id is the `X-Request-ID` a trusted proxy sent (when `TRUSTED_PROXIES` is set and the
value is a plain token), else a new one; either way the response carries it back and
every log line written while the request runs names it (`newsletter.logs`). Being
outermost, this sees every answer, the ones made before Flask's machinery included.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from newsletter import logs, metrics

# The Flask endpoint a request was routed to (by Flask, or by a declared fast path for
# that endpoint), left in the environ for the count below.
ENDPOINT_KEY = "newsletter.endpoint"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RequestContext:
    def __init__(self, app: WSGIApp, *, trust_request_id: bool) -> None:
        self.app = app
        self.trust_request_id = trust_request_id

    def request_id(self, environ: dict[str, Any]) -> str:
        given = environ.get("HTTP_X_REQUEST_ID") if self.trust_request_id else None
        if given and _REQUEST_ID.match(given):
            return str(given)
        return uuid.uuid4().hex

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        rid = self.request_id(environ)
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        status: list[str] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code)
            headers.append(("X-Request-ID", rid))
            return start_response(code, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            logs.request_id.reset(token)
            code = int(status[-1][:3]) if status else 500
            metrics.http_request(
                environ.get(ENDPOINT_KEY, "unmatched"),
                environ.get("REQUEST_METHOD", ""),
                code,
                time.perf_counter() - started,
            )
