"""A template version rendered with sample data, for the editor's preview frames."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from concurrent.futures import Future

from sqlalchemy.orm import Session

from newsletter.mail.render import (
    LAYOUT,
    RenderedEmail,
    TemplateRenderError,
    TemplateSources,
    render_many,
)
from newsletter.mail.templates import samples
from newsletter.mail.templates.store import check_name, published_parts, sources_of


def preview(
    session: Session, name: str, parts: dict[str, str], variant: str | None = None
) -> RenderedEmail:
    """The email rendered with sample data (the layout: inside the edition)."""
    check_name(name)
    if name == LAYOUT:
        email, own, layout = "edition", published_parts(session, "edition"), parts
    else:
        email, own, layout = name, parts, None
    options = samples.variants(email)
    context = options.get(variant or "", next(iter(options.values())))
    sources = sources_of(session, email, own, layout)
    # The desktop, mobile and text frames ask for the same rendering at once: render it
    # once, and keep its outcome (a template that breaks a limit is not run three times).
    key = (email, sources, json.dumps(context, sort_keys=True, default=str))
    with _preview_lock:
        pending = _previews.get(key)
        mine = pending is None
        if pending is None:
            pending = _previews[key] = Future()
            while len(_previews) > 32:
                _previews.popitem(last=False)
        else:
            _previews.move_to_end(key)
    if mine:
        try:
            outcome: RenderedEmail | TemplateRenderError = render_many(email, sources, [context])[0]
        except TemplateRenderError as exc:
            outcome = exc
        except BaseException as exc:  # whoever waits on it must not wait forever
            pending.set_exception(exc)
            raise
        pending.set_result(outcome)
        if isinstance(outcome, TemplateRenderError):  # shared with the frames asking now only
            with _preview_lock:
                _previews.pop(key, None)
    else:
        outcome = pending.result()
    if isinstance(outcome, TemplateRenderError):
        raise outcome
    return outcome


_previews: OrderedDict[
    tuple[str, TemplateSources, str], Future[RenderedEmail | TemplateRenderError]
] = OrderedDict()
_preview_lock = threading.Lock()


def variant_names(name: str) -> list[str]:
    return list(samples.variants("edition" if name == LAYOUT else name))
