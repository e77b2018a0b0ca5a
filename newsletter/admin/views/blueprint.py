"""The staff area's blueprint (`admin`), its staff check, and what its views share.

Everything under /admin answers 404 to anyone who is not signed-in staff, before any
other check (CSRF included), so the area cannot even be discovered. Every POST then
needs the CSRF token.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy import inspect

from newsletter.auth.session import current_reader
from newsletter.extensions import csrf
from newsletter.readers.models import Reader

bp = Blueprint("admin", __name__, url_prefix="/admin")
# Endpoints that take files bigger than the app's 1 MB request limit.
LARGE_UPLOADS = frozenset({"admin.readers_import"})

# Email HTML shown to staff is untrusted: a frame of its own, no scripts, no requests
# out except images (as the outbox does).
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
    "font-src https: data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)


def staff_nav() -> dict[str, bool]:
    """`is_staff_member` for the "Admin" link in the site header. Read without a database
    round trip when the reader is already loaded, and safely on error pages, where the
    session is already closed."""
    reader = current_reader()
    if reader is None:
        return {"is_staff_member": False}
    state = inspect(reader)
    value = state.dict.get("is_staff")
    if value is None and not state.detached:
        value = reader.is_staff
    return {"is_staff_member": bool(value)}


@bp.before_request
def staff_only():  # type: ignore[no-untyped-def]
    reader = current_reader()
    if reader is None or not reader.is_staff:
        abort(404)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if request.endpoint in LARGE_UPLOADS:  # before the form is read, CSRF token included
            request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]
        csrf.protect()


def current_staff() -> Reader:
    reader = current_reader()
    assert reader is not None
    return reader


def preview_response(html: str):  # type: ignore[no-untyped-def]
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def error_document(title: str, errors: list[str]) -> str:
    return render_template("admin/preview_error.html", title=title, errors=errors)
