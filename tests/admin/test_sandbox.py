"""Templates run in Jinja's sandbox, narrowed: known ways out fail safely, with a message,
and nothing secret ends up in a page or an email."""

from __future__ import annotations

import pytest

from newsletter.mail.render import TemplateRenderError, default_sources, render_sources
from tests.admin.conftest import post
from tests.conftest import TEST_SECRET

CONTEXT = {
    "confirm_url": "http://localhost/confirm/abc",
    "valid_hours": 72,
    "base_url": "http://localhost",
    "postal_address": "1 Test Street",
    "product_name": "Both Sides Daily",
    "unsubscribe_url": None,
}

ESCAPES = [
    # attribute walks to Python internals
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ("{{ confirm_url.__class__.__base__ }}", "unsafe"),
    ("{{ ().__class__.__bases__[0].__subclasses__() }}", "unsafe"),
    ("{{ self.__init__.__globals__ }}", "unsafe"),
    ("{{ self._TemplateReference__context }}", "unsafe"),
    ("{{ range.__globals__['os'] }}", "unsafe"),
    ("{{ namespace.__init__.__globals__ }}", "unsafe"),
    ("{{ dict.__base__.__subclasses__() }}", "unsafe"),
    ("{{ confirm_url|attr('__class__') }}", "unsafe"),
    ("{% set x = confirm_url|attr('__class__') %}{{ x.__mro__ }}", "unsafe"),
    ("{{ (confirm_url|attr('__class__')|attr('__mro__')) }}", "no attribute"),
    # globals that other Jinja environments have: not here
    ("{{ cycler.__init__.__globals__.os }}", "undefined"),
    ("{{ joiner.__init__.__globals__ }}", "undefined"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "undefined"),
    ("{{ config }}", "undefined"),
    ("{{ config.SECRET_KEY }}", "undefined"),
    ("{{ config.items() }}", "undefined"),
    ("{{ request.application.__globals__ }}", "undefined"),
    ("{{ url_for.__globals__ }}", "undefined"),
    ("{{ get_flashed_messages.__globals__ }}", "undefined"),
    ("{{ g }}", "undefined"),
    ("{{ session }}", "undefined"),
    # format-string tricks
    ("{{ '{0.__class__.__mro__}'.format(confirm_url) }}", "unsafe"),
    ("{{ '{x.__class__}'.format_map({'x': confirm_url}) }}", "unsafe"),
    ("{{ ('{0.__class__}'|attr('format'))(confirm_url) }}", "unsafe"),
    ("{{ '{x.__init__.__globals__}'.format(x=confirm_url) }}", "unsafe"),
    ("{{ '%s'|format(confirm_url.__class__) }}", "unsafe"),
    # resource exhaustion
    ("{{ 2 ** 100000000 }}", "exponent"),
    ("{{ 'x' * 100000000 }}", "too long"),
    ("{{ range(100000000)|list }}", "range too big"),
]


@pytest.mark.parametrize(("attempt", "why"), ESCAPES)
def test_an_escape_attempt_fails_with_a_message(attempt, why):
    sources = default_sources("confirm")
    broken = sources.__class__(
        subject=f"Hello {attempt}",
        mjml=sources.mjml,
        text=sources.text,
        layout_mjml=sources.layout_mjml,
        layout_text=sources.layout_text,
    )
    with pytest.raises(TemplateRenderError) as caught:
        render_sources("confirm", broken, CONTEXT)
    message = caught.value.message
    assert "confirm/subject.txt, line 1" in message
    assert why in message.lower()


# Through the editor, one of each kind (every attempt above runs through the same code).
EDITOR_ATTEMPTS = [
    "{{ cycler.__init__.__globals__ }}",
    "{{ config.SECRET_KEY }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(subject) }}",
]


def test_through_the_editor_escapes_are_refused_with_the_reason_and_leak_nothing(app, staff):
    from newsletter.mail.render import default_parts

    parts = default_parts("edition")
    assert "Save as new version" in staff.get("/admin/templates/edition").get_data(as_text=True)
    for attempt in EDITOR_ATTEMPTS:
        form = {"subject": attempt, "mjml": parts["mjml"], "text": parts["text"]}
        response = post(staff, "/admin/templates/edition", form)
        body = response.get_data(as_text=True)
        assert response.status_code == 400, attempt
        assert "Not saved: fix these first." in body
        assert "edition/subject.txt, line 1" in body
        assert TEST_SECRET not in body
        # The editor's live check says the same, as JSON.
        checked = post(staff, "/admin/templates/edition/check", form).get_json()
        assert checked["errors"] and "edition/subject.txt, line 1" in checked["errors"][0]
        # The preview frame shows the error instead of an email.
        preview = post(staff, "/admin/templates/edition/preview", form)
        assert preview.status_code == 200
        assert "cannot be shown" in preview.get_data(as_text=True)
        assert TEST_SECRET not in preview.get_data(as_text=True)
    # Nothing was saved.
    from newsletter.mail.templates.models import TemplateVersion

    with app.extensions["db"].session() as session:
        assert session.query(TemplateVersion).filter_by(source="staff").count() == 0
