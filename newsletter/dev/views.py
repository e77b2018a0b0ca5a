"""`/dev/outbox`: the local outbox, so a newcomer can read the emails the app sent."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template

bp = Blueprint("dev", __name__, url_prefix="/dev")
_NAME = re.compile(r"^[0-9T]+-[0-9a-f]{8}\.eml$")


def _outbox() -> Path:
    return current_app.config["OUTBOX_PATH"]


def _load(name: str) -> EmailMessage:
    if not _NAME.match(name):  # no path tricks: names are ours, checked by shape
        abort(404)
    path = _outbox() / name
    if not path.is_file():
        abort(404)
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())  # type: ignore[return-value]


def _part(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    return part.get_content() if part is not None else ""


@bp.get("/outbox")
def outbox():  # type: ignore[no-untyped-def]
    directory = _outbox()
    names = (
        sorted((p.name for p in directory.glob("*.eml")), reverse=True)
        if directory.is_dir()
        else []
    )
    messages = []
    for name in names[:200]:
        msg = _load(name)
        messages.append(
            {"name": name, "to": msg["To"], "subject": msg["Subject"], "date": msg["Date"]}
        )
    return render_template("outbox.html", messages=messages)


@bp.get("/outbox/<name>")
def outbox_message(name: str):  # type: ignore[no-untyped-def]
    msg = _load(name)
    return render_template(
        "outbox_message.html",
        name=name,
        msg=msg,
        text=_part(msg, "plain"),
        headers=list(msg.items()),
    )


@bp.get("/outbox/<name>/html")
def outbox_html(name: str):  # type: ignore[no-untyped-def]
    html = _part(_load(name), "html")
    response = current_app.response_class(html, mimetype="text/html")
    # Email HTML is untrusted here: shown only inside a sandboxed frame, no scripts.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
        "frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox "
        "allow-top-navigation-by-user-activation"
    )
    return response
