"""The scheduled jobs. Referenced by import path so the persistent job store can hold them."""

from __future__ import annotations

import logging
from functools import lru_cache

from flask import Flask

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def job_app() -> Flask:
    from newsletter.app import create_app

    return create_app()


def prune_rate_limits() -> int:
    from newsletter.ratelimit import prune

    app = job_app()
    with app.app_context():
        removed = prune(app.extensions["db"].engine)
    log.info("pruned %d expired rate-limit windows", removed)
    return removed
