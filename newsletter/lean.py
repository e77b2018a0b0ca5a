"""Routes answered before Flask: the JSON endpoints that take requests in floods (read
confirmations: one per free story shown, the site's busiest write).

For these, Flask's request machinery (request, session and response objects, hooks)
costs the worker more CPU than the answer does. A view declares its fast path once, with
`fast_path` in place of the blueprint's `route`: that registers the Flask view, and the
blueprint's registration hands the app's `LeanRoutes` the view's own werkzeug `Rule`s,
which it matches with werkzeug's `MapAdapter` (same converters, same slash rules), so the
two paths cannot disagree about which requests are the route's.

`LeanRoutes` is WSGI middleware in front of Flask: a request that matches a fast path is
answered by its `answer`, inside an app context only; everything else goes to Flask
untouched. An answer gets a `LeanRequest` (its body already read, within `max_body`)
and returns (JSON body, status), or None to leave the request to the Flask view, which
then reads the same body. So the Flask view answers what the fast path declines (a
signed-in reader's read confirmation) or refuses to read (no `Content-Length`, a body
over its limit, another content type), calling the same function for the rest. Every
answer carries the headers Flask's get (`newsletter.headers`); an exception is logged
and answered 500 in JSON, and the app context's teardown closes the database session
(rolling back what was not committed), as the app's error handler does.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Blueprint, Flask
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie
from werkzeug.routing import Map, MapAdapter

from newsletter.errors import UNEXPECTED_ERROR
from newsletter.headers import security_headers
from newsletter.inputs import storable
from newsletter.middleware import ENDPOINT_KEY

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
WSGIApp = Callable[[WSGIEnviron, Callable[..., Any]], Iterable[bytes]]
Answer = tuple[dict[str, Any], int]
View = TypeVar("View", bound=Callable[..., Any])


@dataclass
class LeanRequest:
    environ: WSGIEnviron
    view_args: dict[str, Any]  # the rule's converted arguments, as Flask gives its view
    body: bytes

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    @cached_property
    def cookies(self) -> dict[str, str]:
        return parse_cookie(self.environ)  # type: ignore[return-value]


Handler = Callable[[LeanRequest], Answer | None]


@dataclass(frozen=True)
class _Route:
    endpoint: str  # the Flask view's
    methods: frozenset[str]
    handler: Handler
    max_body: int
    mimetype: str | None = None  # None: any content type


def fast_path(
    bp: Blueprint,
    rule: str,
    *,
    methods: list[str],
    answer: Handler,
    max_body: int,
    mimetype: str | None = None,
) -> Callable[[View], View]:
    """`bp.route(rule, methods=methods)` for the decorated view, with `answer` answering
    its requests before Flask when their body has a `Content-Length` of at most
    `max_body` and (when given) the content type `mimetype`."""

    def decorate(view: View) -> View:
        bp.add_url_rule(rule, view_func=view, methods=methods)

        def declare(state: BlueprintSetupState) -> None:
            route = _Route(
                f"{state.name}.{view.__name__}", frozenset(methods), answer, max_body, mimetype
            )
            state.app.extensions["lean_routes"].add(route)

        bp.record(declare)  # after the rule's own registration: the rule exists by then
        return view

    return decorate


@dataclass
class LeanRoutes:
    """`app.wsgi_app`, wrapping Flask's."""

    app: Flask
    inner: WSGIApp
    routes: list[_Route] = field(default_factory=list)

    def __post_init__(self) -> None:
        url_map = self.app.url_map
        self._map = Map(
            converters=url_map.converters,
            strict_slashes=url_map.strict_slashes,
            merge_slashes=url_map.merge_slashes,
        )
        self._adapter: MapAdapter = self._map.bind("localhost")
        self._methods: set[str] = set()
        # The map only grows at startup, so its answer for a path never changes: kept for
        # the paths seen most (a few stories' slugs), as werkzeug's matcher costs more
        # than a cache lookup on every fast request.
        self._route_of = lru_cache(maxsize=4096)(self._route_uncached)
        self._headers: list[tuple[str, str]] | None = None

    def add(self, route: _Route) -> None:
        """Answer `route.endpoint`'s requests: its rules are copied from the app's map."""
        rules = list(self.app.url_map.iter_rules(route.endpoint))
        if not rules:
            raise LookupError(f"no Flask rule for {route.endpoint}")
        for rule in rules:
            self._map.add(rule.empty())
        self._methods |= route.methods
        self.routes.append(route)
        self._route_of.cache_clear()

    @property
    def headers(self) -> list[tuple[str, str]]:
        """What Flask's `after_request` adds to a JSON answer (read once the app is
        configured: HSTS depends on it)."""
        if self._headers is None:
            hsts = self.app.config["SESSION_COOKIE_SECURE"]
            self._headers = security_headers({"content-type", "content-length"}, None, hsts=hsts)
        return self._headers

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
        environ[ENDPOINT_KEY] = route.endpoint  # counted under its Flask view's name
        data = json.dumps(body).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *self.headers,
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data]

    def match(self, path: str, method: str) -> tuple[_Route, dict[str, Any]] | None:
        """The fast path a request for `path` is, and its view arguments, as Flask's
        router would find them; None where Flask's router would not find one of them
        (including where it would redirect)."""
        if method not in self._methods or not path.isascii():
            # WSGI gives the path as latin-1 and Flask decodes UTF-8: ASCII only here.
            return None
        found = self._route_of(path, method)
        if found is None:
            return None
        endpoint, args = found
        for route in self.routes:
            if route.endpoint == endpoint and method in route.methods:
                return route, dict(args)
        return None

    def _route_uncached(self, path: str, method: str) -> tuple[str, dict[str, Any]] | None:
        try:
            endpoint, args = self._adapter.match(path, method)
        except HTTPException:  # not found, another method, or a redirect: Flask's
            return None
        return str(endpoint), dict(args)

    def _read(self, environ: WSGIEnviron) -> tuple[_Route, LeanRequest] | None:
        """The route a request is for and the request with its body, or None: Flask's."""
        path = environ.get("PATH_INFO", "")
        found = self.match(path, environ.get("REQUEST_METHOD", ""))
        if found is None:
            return None
        route, args = found
        if not storable(path):  # Flask's request guard answers it (`refuse_unstorable`)
            return None
        length = environ.get("CONTENT_LENGTH") or ""
        if not length.isdigit() or int(length) > route.max_body:
            return None
        if route.mimetype is not None:
            mimetype = (environ.get("CONTENT_TYPE") or "").partition(";")[0]
            if mimetype.strip().lower() != route.mimetype:
                return None
        body = environ["wsgi.input"].read(int(length))
        return route, LeanRequest(environ, args, body)
