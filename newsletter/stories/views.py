"""The stories API: `POST /api/stories` imports the JSON format of `import_stories`.

It is authenticated by a bearer token (STORIES_API_TOKEN), not by a browser session, so
its blueprint is exempt from CSRF; nothing else belongs in this blueprint.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request

from newsletter.db import db_session
from newsletter.jsonbody import BadJson, JsonTooLarge, request_json
from newsletter.stories.importing import import_stories

api = Blueprint("stories_api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)


def _authorized() -> bool:
    expected = current_app.config.get("STORIES_API_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given.strip():
        return False
    # Constant time, so the token cannot be guessed byte by byte from response times.
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@api.post("/stories")
def import_stories_api():  # type: ignore[no-untyped-def]
    if not _authorized():
        return (
            jsonify(error="A valid 'Authorization: Bearer <token>' header is required."),
            401,
            {"WWW-Authenticate": 'Bearer realm="stories"'},
        )
    try:
        # Its own limit replaces the app-wide one, also for a body sent without a length.
        data = request_json(current_app.config["STORIES_API_MAX_BYTES"])
    except JsonTooLarge as exc:
        return jsonify(error=exc.message), exc.status_code
    except BadJson as exc:
        # `error` as every JSON route says it, and the import report's shape as well.
        error = {"record": None, "index": None, "id": None, "path": "", "reason": exc.message}
        return jsonify(
            error=exc.message, errors=[error], created=0, updated=0, unchanged=0, rejected=1
        ), exc.status_code
    session = db_session()
    report = import_stories(session, data)
    session.commit()  # the good records land even when others were rejected
    body = report.as_dict()
    log.info(
        "stories API import: %s created, %s updated, %s unchanged, %s rejected",
        body["created"],
        body["updated"],
        body["unchanged"],
        body["rejected"],
    )
    return jsonify(body), 400 if report.errors else 200
