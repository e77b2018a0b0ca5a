"""Staff templates can load only templates of their own set, and run under CPU, memory and
output bounds: through every staff route (check, preview, save, publish, test send) and the
send path, whatever the spelling or the shape of the runaway."""

from __future__ import annotations

import http.client
import shutil
import threading
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.config import PROJECT_ROOT
from newsletter.mail import render
from newsletter.mail.render import (
    TemplateRenderError,
    TemplateSources,
    default_parts,
    default_sources,
    render_sources,
    template_set,
)
from newsletter.mail.templates import store
from newsletter.mail.templates.models import EmailTemplate, TemplateFailure, TemplateVersion
from tests.admin.conftest import STAFF, fresh, post, signed_in_as, token
from tests.admin.test_sandbox import CONTEXT
from tests.conftest import TEST_SECRET
from tests.helpers import subscribe

EDITION = default_parts("edition")
CONFIG_SOURCE = str(PROJECT_ROOT / "newsletter" / "config.py")
# What must never show: the files' contents, the process environment, the app's source.
LEAKS = ("root:x:0:0", "PATH=", "PYTHONPATH", TEST_SECRET, "class Config", "import os")

LOADS = [
    "{% include '/proc/self/environ' %}",
    "{% include '/etc/passwd' %}",
    "{% include '//etc/hostname' %}",
    "{% include '../../../../etc/passwd' %}",
    "{% include 'edition/../../../newsletter/config.py' %}",
    f"{{% include '{CONFIG_SOURCE}' %}}",
    "{% include '../newsletter/config.py' %}",
    "{% include ['/etc/passwd', '_footer.txt'] %}",
    "{% import '/etc/passwd' as passwd %}",
    "{% from '/proc/self/environ' import anything %}",
    "{% extends '/etc/passwd' %}",
    "{% set where = '/etc/' ~ 'passwd' %}{% include where %}",
    "{% include subject %}",
    "{% include stories[0].title %}",
]


def with_text(line: str, parts: dict[str, str] = EDITION) -> dict[str, str]:
    """The edition's parts with `line` as the text body's second line."""
    head, rest = parts["text"].split("\n", 1)
    return {**parts, "text": f"{head}\n{line}\n{rest}"}


def assert_no_leak(body: str) -> None:
    for secret in LEAKS:
        assert secret not in body, secret


def add_version(session, name: str, parts: dict[str, str], number: int) -> TemplateVersion:  # type: ignore[no-untyped-def]
    """A version written directly, as if saved before the checks refused it."""
    version = TemplateVersion(name=name, number=number, source="staff", **parts)
    session.add(version)
    session.commit()
    return version


class TestTemplateSet:
    @pytest.mark.parametrize("load", LOADS)
    def test_check_save_and_preview_refuse_every_spelling_with_its_line(self, app, staff, load):
        form = with_text(load)
        checked = post(staff, "/admin/templates/edition/check", form).get_json()
        assert any("edition/body.txt, line 2:" in e for e in checked["errors"]), checked
        assert_no_leak(str(checked))
        saved = post(staff, "/admin/templates/edition", form)
        assert saved.status_code == 400
        assert "edition/body.txt, line 2:" in saved.get_data(as_text=True)
        for view in ("text", "html"):
            preview = post(staff, "/admin/templates/edition/preview", {**form, "view": view})
            body = preview.get_data(as_text=True)
            if "[" not in load:  # a list falls back to the template of the set in it
                assert "cannot be shown" in body, body[:500]
            assert_no_leak(body)
        with app.extensions["db"].session() as session:
            assert session.query(TemplateVersion).filter_by(source="staff").count() == 0

    def test_the_messages_say_what_is_wrong(self, app, staff):
        errors = post(staff, "/admin/templates/edition/check", with_text(LOADS[1])).get_json()
        assert any(
            "{% include %} of '/etc/passwd': not one of this email's templates" in e
            and "_footer.txt" in e
            for e in errors["errors"]
        ), errors
        errors = post(staff, "/admin/templates/edition/check", with_text(LOADS[-2])).get_json()
        assert any("must name a template in quotes" in e for e in errors["errors"]), errors

    def test_templates_of_the_set_still_load(self, app, staff):
        form = with_text("{% include '_footer.txt' %}")
        assert post(staff, "/admin/templates/edition/check", form).get_json()["errors"] == []
        preview = post(staff, "/admin/templates/edition/preview", {**form, "view": "text"})
        assert "1 Test Street, Springfield" in preview.get_data(as_text=True)

    def test_ignore_missing_outside_the_set_renders_nothing_from_outside(self, app, staff):
        form = with_text("{% include '/etc/passwd' ignore missing %}")
        assert post(staff, "/admin/templates/edition/check", form).get_json()["errors"]
        preview = post(staff, "/admin/templates/edition/preview", {**form, "view": "text"})
        assert_no_leak(preview.get_data(as_text=True))

    def test_a_symlink_out_of_the_folder_is_not_in_the_set(self, app, staff, tmp_path, monkeypatch):
        copy = tmp_path / "email"
        shutil.copytree(render.EMAIL_TEMPLATES, copy)
        (copy / "_evil.txt").symlink_to("/etc/passwd")
        (copy / "_etc").symlink_to("/etc", target_is_directory=True)
        (copy / "edition" / "_config.txt").symlink_to(CONFIG_SOURCE)
        (copy / "_inside.txt").symlink_to(copy / "_footer.txt")  # a link inside is fine
        (copy / "_extra.txt").write_text("Extra text from the template set\n")
        monkeypatch.setattr(render, "EMAIL_TEMPLATES", copy)
        names = set(template_set())
        assert {"_extra.txt", "_inside.txt", "_footer.txt"} <= names
        assert not {"_evil.txt", "_etc/passwd", "edition/_config.txt"} & names

        ok = with_text("{% include '_extra.txt' %}")
        assert post(staff, "/admin/templates/edition/check", ok).get_json()["errors"] == []
        preview = post(staff, "/admin/templates/edition/preview", {**ok, "view": "text"})
        assert "Extra text from the template set" in preview.get_data(as_text=True)
        for load in ("_evil.txt", "_etc/passwd", "edition/_config.txt", "_etc/hostname"):
            form = with_text(f"{{% include '{load}' %}}")
            errors = post(staff, "/admin/templates/edition/check", form).get_json()["errors"]
            assert any("edition/body.txt, line 2:" in e for e in errors), (load, errors)
            preview = post(staff, "/admin/templates/edition/preview", {**form, "view": "text"})
            assert "cannot be shown" in preview.get_data(as_text=True)
            assert_no_leak(preview.get_data(as_text=True))

    def test_publish_and_test_send_refuse_a_stored_version_that_loads_a_file(
        self, app, staff, session, smtp
    ):
        add_version(session, "edition", with_text(LOADS[0]), number=2)
        response = post(staff, "/admin/templates/edition/versions/2/publish")
        assert response.status_code == 303
        fresh(session)
        assert store.published_number(session, "edition") is None
        page = staff.get(response.headers["Location"]).get_data(as_text=True)
        assert "edition/body.txt, line 2" in page
        assert_no_leak(page)
        post(staff, "/admin/templates/edition/versions/2/test", {"variant": "free"})
        assert smtp.messages_to(STAFF) == []

    def test_at_send_time_a_published_version_that_loads_a_file_falls_back(
        self, app, client, session, smtp
    ):
        parts = default_parts("confirm")
        broken = add_version(
            session,
            "confirm",
            {**parts, "text": "{% include '/etc/passwd' %}\n" + parts["text"]},
            2,
        )
        session.add(EmailTemplate(name="confirm", published_id=broken.id))
        session.commit()
        subscribe(client, smtp, "reader@example.com")
        confirmation, welcome = smtp.messages_to("reader@example.com")
        assert "/confirm/" in confirmation.as_string()
        for message in (confirmation, welcome):
            assert_no_leak(message.as_string())
        fresh(session)
        [failure] = session.scalars(select(TemplateFailure)).all()
        assert "confirm/body.txt, line 1" in failure.message
        assert "the default files was used instead" in failure.message


# --- resource bounds ---------------------------------------------------------------------

RUNAWAYS = [
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "longer than 1 s of CPU time",
    ),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "too long",
    ),
    (
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        "too long",
    ),
    (
        "{% set l = ['x'] %}{% for i in range(60) %}"
        "{% if l.append(l[-1] ~ l[-1]) %}{% endif %}{% endfor %}{{ l|length }}",
        "more than 64 MB of memory",
    ),
    ("{{ 'x'.center(300000000) }}", "width over"),
    ("{{ 'x'.ljust(300000000) }}", "width over"),
    ("{{ 'x'|center(300000000) }}", "width over"),
    ("{{ 'x'|indent(300000000, first=True) }}", "width over"),
    ("{{ '{:>300000000}'.format(1) }}", "format width or precision over"),
    ("{{ '{:.300000000f}'.format(1.5) }}", "format width or precision over"),
    ("{{ '%300000000d'|format(1) }}", "format width or precision over"),
    ("{{ '%300000000d' % 1 }}", "format width or precision over"),
    ("{{ '%*d' % (300000000, 1) }}", "format width or precision over"),
    (
        "{% set ns = namespace(n=3) %}{% for i in range(40) %}"
        "{% set ns.n = ns.n ** 99 %}{% endfor %}{{ ns.n }}",
        "too big",
    ),
    (
        "{% set ns = namespace(n=3) %}{% for i in range(40) %}"
        "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
        "too big",
    ),
    ("{% for i in range(100000) %}{{ 'x' * 999999 }}{% endfor %}", "output is over 1 MB"),
    ("{{ (['x' * 999999] * 1000)|join }}", "too long"),
    ("{{ ('x' * 999999).replace('x', 'yyyyyyyyyy') }}", "too long"),
]
BOUNDED = {"TEMPLATE_CPU_SECONDS": 1, "TEMPLATE_MEMORY_MB": 64, "TEMPLATE_OUTPUT_MB": 1}


@pytest.mark.parametrize("app_settings", [BOUNDED])
class TestBounds:
    @pytest.mark.parametrize(("runaway", "why"), RUNAWAYS)
    def test_check_save_and_preview_stop_it_with_a_clear_error(self, app, staff, runaway, why):
        form = with_text(runaway)
        started = time.monotonic()
        errors = post(staff, "/admin/templates/edition/check", form).get_json()["errors"]
        assert any(why in e for e in errors), errors
        saved = post(staff, "/admin/templates/edition", form)
        assert saved.status_code == 400 and why in saved.get_data(as_text=True)
        preview = post(staff, "/admin/templates/edition/preview", {**form, "view": "text"})
        assert why in preview.get_data(as_text=True)
        # Three renders, each stopped within the CPU limit plus the child's start.
        assert time.monotonic() - started < 30
        with app.extensions["db"].session() as session:
            assert session.query(TemplateVersion).filter_by(source="staff").count() == 0

    def test_the_error_names_the_line_when_it_can(self, app, staff):
        form = with_text(RUNAWAYS[0][0])
        errors = post(staff, "/admin/templates/edition/check", form).get_json()["errors"]
        assert any(e.startswith("edition/body.txt, line 2: limit:") for e in errors), errors

    def test_publish_and_test_send_refuse_a_stored_runaway(self, app, staff, session, smtp):
        add_version(session, "edition", with_text(RUNAWAYS[0][0]), number=2)
        response = post(staff, "/admin/templates/edition/versions/2/publish")
        fresh(session)
        assert store.published_number(session, "edition") is None
        page = staff.get(response.headers["Location"]).get_data(as_text=True)
        assert "CPU time" in page
        test = post(staff, "/admin/templates/edition/versions/2/test", {"variant": "free"})
        page = staff.get(test.headers["Location"]).get_data(as_text=True)
        assert "The test was not sent" in page and "CPU time" in page
        assert smtp.messages_to(STAFF) == []

    def test_at_send_time_the_last_good_version_is_used(self, app, client, session, smtp):
        parts = default_parts("confirm")
        good = add_version(
            session, "confirm", {**parts, "subject": "Good version: {{ product_name }}"}, 2
        )
        runaway = add_version(session, "confirm", with_text(RUNAWAYS[0][0], parts), 3)
        session.add(EmailTemplate(name="confirm", published_id=good.id))
        session.commit()
        subscribe(client, smtp, "first@example.com")  # v2 renders in a real send
        fresh(session)
        session.get(EmailTemplate, "confirm").published_id = runaway.id
        session.commit()
        subscribe(app.test_client(), smtp, "second@example.com")
        message = smtp.messages_to("second@example.com")[0]  # the confirmation (then welcome)
        assert message["Subject"] == "Good version: Both Sides Daily"
        fresh(session)
        [failure] = session.scalars(select(TemplateFailure)).all()
        assert failure.failed_version.number == 3 and failure.used_version.number == 2
        assert "confirm/body.txt, line 2: limit: the template took longer than 1 s" in (
            failure.message
        )


def _staff_cookie_and_token(app) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A staff session made through the test client, for a real HTTP client."""
    client = app.test_client()
    signed_in_as(client, app, STAFF, staff=True)
    csrf = token(client, "/admin/templates")
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return f"{cookie.key}={cookie.value}", csrf


def _post(url: str, path: str, cookie: str, form: dict[str, str]) -> tuple[int, str]:
    host = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    body = urllib.parse.urlencode(form)
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read().decode()


def _get_seconds(url: str, path: str) -> float:
    host = urllib.parse.urlsplit(url)
    started = time.monotonic()
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return time.monotonic() - started


def test_the_server_answers_other_requests_while_a_runaway_is_stopped(live_server):
    app = live_server.app
    cookie, csrf = _staff_cookie_and_token(app)
    runaway = {**with_text(RUNAWAYS[0][0]), "csrf_token": csrf, "view": "text"}
    outcome: dict[str, tuple[int, str]] = {}
    path = "/admin/templates/edition/preview"

    def fire() -> None:
        outcome["runaway"] = _post(live_server.url, path, cookie, runaway)

    started = time.monotonic()
    thread = threading.Thread(target=fire)
    thread.start()
    time.sleep(0.3)  # the runaway is running
    answers = []
    while thread.is_alive() and time.monotonic() - started < 30:
        answers.append(_get_seconds(live_server.url, "/healthz"))
        time.sleep(0.1)
    thread.join(30)
    assert len(answers) >= 3 and max(answers) < 1.0, answers
    status, body = outcome["runaway"]
    assert status == 200 and "longer than 2 s of CPU time" in body
    assert time.monotonic() - started < 20


def test_a_runaway_preview_does_not_hold_up_another_preview(live_server):
    app = live_server.app
    cookie, csrf = _staff_cookie_and_token(app)
    runaway = {**with_text(RUNAWAYS[0][0]), "csrf_token": csrf, "view": "text"}
    normal = {**with_text("Hello from the desk"), "csrf_token": csrf, "view": "text"}
    path = "/admin/templates/edition/preview"
    thread = threading.Thread(target=_post, args=(live_server.url, path, cookie, runaway))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    status, body = _post(live_server.url, path, cookie, normal)
    assert status == 200 and "Hello from the desk" in body
    assert time.monotonic() - started < 1.5  # not after the runaway's 2 s
    thread.join(30)


# --- properties --------------------------------------------------------------------------

CONFIRM = CONTEXT  # the confirmation email's context
PIECES = [
    "..",
    "/",
    "//",
    ".",
    "etc",
    "passwd",
    "proc",
    "self",
    "environ",
    "_footer.txt",
    "edition",
    "body.txt",
    "confirm",
    "newsletter",
    "config.py",
    "%2e%2e",
    "\\",
    "~",
]


def _with_subject(subject: str) -> TemplateSources:
    sources = default_sources("confirm")
    return TemplateSources(
        subject, sources.mjml, sources.text, sources.layout_mjml, sources.layout_text
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8), st.booleans())
def test_any_name_loads_a_template_of_the_set_or_nothing(pieces, computed):
    name = "".join(pieces)
    subject = (
        f"{{% set n = {name!r} %}}{{% include n %}}" if computed else f"{{% include {name!r} %}}"
    )
    try:
        rendered = render_sources("confirm", _with_subject(subject), CONFIRM)
    except TemplateRenderError as exc:
        assert "line 1" in exc.message
        return
    assert name in template_set() or name == "confirm/subject.txt"
    assert_no_leak(rendered.subject)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            "'ab'.center(N)",
            "'ab'|center(N)",
            "'%*d' % (N, 1)",
            "'{:N}'.format(1)",
            "'%Nd'|format(1)",
            "'ab' * N",
            "7 ** N",
            "'ab'|indent(N, first=True)",
        ]
    ),
    st.integers(min_value=0, max_value=10**9),
)
def test_sizes_are_bounded_or_refused(shape, n):
    expression = shape.replace("N", str(n))
    try:
        rendered = render_sources("confirm", _with_subject(f"{{{{ {expression} }}}}"), CONFIRM)
    except TemplateRenderError as exc:
        assert "confirm/subject.txt, line 1" in exc.message
        return
    assert len(rendered.subject) <= max(render.MAX_REPEAT_LENGTH, render.MAX_INT_BITS) + 2
