"""`/admin/…`: the staff area, one module per area on the one `admin` blueprint. Thin:
check, call a service, audit, commit."""

from __future__ import annotations

from flask import Flask

from newsletter.extensions import csrf


def init_app(app: Flask) -> None:
    # Imported for the routes they add to the blueprint, in the order the area reads
    # (and the URL map lists them): dashboard, templates, editions, readers, stories, feeds.
    # isort: off
    from newsletter.admin.views import dashboard  # noqa: F401
    from newsletter.admin.views import templates  # noqa: F401
    from newsletter.admin.views import editions  # noqa: F401
    from newsletter.admin.views import readers  # noqa: F401
    from newsletter.admin.views import stories  # noqa: F401
    from newsletter.admin.views import deliverability  # noqa: F401
    from newsletter.admin.views import feeds  # noqa: F401

    # isort: on
    from newsletter.admin.views.blueprint import bp, staff_nav

    app.register_blueprint(bp)
    # CSRF is checked in `staff_only`, after the staff check, so that a POST from anyone
    # else is a 404 like everything else here rather than a CSRF error.
    csrf.exempt(bp)
    app.context_processor(staff_nav)
