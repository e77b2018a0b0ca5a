"""Template versions: saving checks them, publishing makes the next edition use them, any
version can be rolled back to, versions can be compared, tests go to the staff member,
and a published version that breaks at send time never stops a send."""

from __future__ import annotations

import re

from sqlalchemy import select

from newsletter.admin.models import AuditEntry
from newsletter.billing.entitlement import Plan
from newsletter.editions.models import EditionVariant
from newsletter.mail.render import LAYOUT, default_parts
from newsletter.mail.templates import checks, store, versions
from newsletter.mail.templates.models import EmailTemplate, TemplateFailure, TemplateVersion
from tests.admin.conftest import STAFF, build_edition, fresh, post
from tests.conftest import links_in
from tests.helpers import path_of, subscribe

EDITION = default_parts("edition")


def with_mjml(old: str, new: str, parts: dict[str, str] = EDITION) -> dict[str, str]:
    assert old in parts["mjml"]
    return {**parts, "mjml": parts["mjml"].replace(old, new, 1)}


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def check(app, parts, name="edition"):  # type: ignore[no-untyped-def]
    with app.app_context(), app.extensions["db"].session() as session:
        return checks.check(session, name, parts)


class TestChecks:
    def test_every_check_says_what_and_where(self, app):
        # One app (and database) for all of them: each is a call to the same service.
        self.every_email_s_files_pass_their_own_checks(app)
        self.jinja_syntax_error_with_its_file_and_line(app)
        self.undefined_variables_are_flagged_even_in_branches_samples_skip(app)
        self.mjml_errors_with_the_template_line(app)
        self.html_over_102_kb_is_a_warning_not_an_error(app)
        self.marker_shaped_text_is_just_text(app)
        self.a_layout_is_checked_inside_every_email(app)

    def every_email_s_files_pass_their_own_checks(self, app):
        names = store.editable_names()
        assert {"confirm", "signin", "edition", LAYOUT} <= set(names)
        for name in names:
            assert check(app, default_parts(name), name).errors == [], name

    def jinja_syntax_error_with_its_file_and_line(self, app):
        parts = with_mjml("{% endfor %}", "{% endfro %}")
        result = check(app, parts)
        line = line_of(parts["mjml"], "{% endfro %}")
        assert any(
            f"edition/body.mjml, line {line}: syntax error" in e and "endfro" in e
            for e in result.errors
        ), result.errors

    def undefined_variables_are_flagged_even_in_branches_samples_skip(self, app):
        text = EDITION["text"].replace(
            '{% if plan == "free" %}', '{% if plan == "free" %}\nHi {{ reader_name }}', 1
        )
        result = check(app, {**EDITION, "text": text})
        line = line_of(text, "{{ reader_name }}")
        assert (
            f"edition/body.txt, line {line}: undefined variable 'reader_name'" in result.errors[0]
        )
        # An undefined attribute only shows when rendering: reported with its line too.
        parts = with_mjml("{{ story.title }}", "{{ story.headline.upper() }}")
        result = check(app, parts)
        assert any("edition/body.mjml, line" in e and "headline" in e for e in result.errors)

    def mjml_errors_with_the_template_line(self, app):
        parts = with_mjml("{{ story.summary }}</mj-text>", "{{ story.overview }}</mj-tex>")
        result = check(app, parts)
        line = line_of(parts["mjml"], "</mj-tex>")
        assert any(
            e.startswith("MJML error") and f"edition/body.mjml, line {line}" in e
            for e in result.errors
        ), result.errors
        unknown = check(app, with_mjml("<mj-divider", "<mj-dividr"))
        assert any("unknown MJML tag <mj-dividr>" in e for e in unknown.errors)
        # What mjml-python itself refuses is reported too.
        broken = check(app, {**EDITION, "mjml": "<mjml><mj-body><mj-section>"})
        assert any(e.startswith("MJML error: ") for e in broken.errors)

    def html_over_102_kb_is_a_warning_not_an_error(self, app):
        padding = "{% for i in range(1500) %}Padding sentence number {{ i }} for size. {% endfor %}"
        result = check(app, with_mjml("{{ story.summary }}</mj-text>", f"{padding}</mj-text>"))
        assert result.errors == []
        assert any("Gmail clips" in w for w in result.warnings)
        assert result.html_bytes > 102 * 1024

    def marker_shaped_text_is_just_text(self, app):
        # Holes are structure, not text (newsletter.mail.message): nothing to reserve.
        result = check(app, with_mjml("Read both sides →", "@@link_1@@ @@to@@"))
        assert result.errors == []

    def a_layout_is_checked_inside_every_email(self, app):
        layout = default_parts(LAYOUT)
        broken = {**layout, "text": layout["text"] + "\n{{ confirm_url }}"}
        result = check(app, broken, LAYOUT)
        assert any("undefined variable 'confirm_url'" in e for e in result.errors)
        assert check(app, layout, LAYOUT).errors == []

    def test_saving_with_errors_keeps_the_text_and_saves_nothing(self, app, staff, session):
        parts = with_mjml("{% for story in stories %}", "{% for story in stories %\n")
        response = post(staff, "/admin/templates/edition", parts)
        assert response.status_code == 400
        body = response.get_data(as_text=True)
        assert "edition/body.mjml, line" in body and "syntax error" in body
        assert (
            "{% for story in stories %\n" in body.replace("&#37;", "%").replace("&#34;", '"')
            or "for story in stories %" in body
        )
        assert (
            session.scalar(select(TemplateVersion).where(TemplateVersion.source == "staff")) is None
        )


def save(client, parts, note=""):  # type: ignore[no-untyped-def]
    response = post(client, "/admin/templates/edition", {**parts, "note": note})
    assert response.status_code == 303, response.get_data(as_text=True)
    return int(re.search(r"from=(\d+)", response.headers["Location"]).group(1))


def variant_html(session, edition_id: int, plan: Plan = Plan.FREE) -> str:  # type: ignore[no-untyped-def]
    fresh(session)  # a fresh snapshot: the app committed in its own session
    return session.scalar(
        select(EditionVariant.html).where(
            EditionVariant.edition_id == edition_id, EditionVariant.plan == plan
        )
    )


class TestVersions:
    def test_publish_is_used_by_the_next_edition_and_rollback_undoes_it(
        self, app, staff, session, smtp
    ):
        edition = build_edition(app, session)
        assert "Good morning from the desk" not in variant_html(session, edition.id)
        v2 = save(
            staff,
            with_mjml(
                "{% for story in stories %}",
                "<mj-text>Good morning from the desk</mj-text>\n{% for story in stories %}",
            ),
            note="greeting",
        )
        assert v2 == 2  # version 1 is the files
        # Saved, not published: readers still get the files.
        assert "Good morning from the desk" not in variant_html(session, edition.id)
        response = post(staff, f"/admin/templates/edition/versions/{v2}/publish")
        assert response.status_code == 303
        page = staff.get(response.headers["Location"]).get_data(as_text=True)
        assert "Published version 2" in page
        # The edition not sent yet was rendered again with it, every variant.
        for plan in Plan:
            assert "Good morning from the desk" in variant_html(session, edition.id, plan)

        # A test to the staff member's own address, through the real SMTP server.
        post(staff, f"/admin/templates/edition/versions/{v2}/test", {"variant": "trial"})
        [message] = smtp.wait_for(STAFF)
        assert message["Subject"].startswith("[Test] ")
        html = message.get_body(("html",)).get_content()
        assert "Good morning from the desk" in html and "days left" in html

        # Roll back to version 1.
        response = post(staff, "/admin/templates/edition/versions/1/publish")
        assert "Rolled back to version 1" in staff.get(response.headers["Location"]).get_data(
            as_text=True
        )
        assert "Good morning from the desk" not in variant_html(session, edition.id)
        fresh(session)
        assert session.get(EmailTemplate, "edition").published.number == 1

        # Diff between the two versions, rendered.
        diff = staff.get("/admin/templates/edition/diff?a=1&b=2").get_data(as_text=True)
        diff = diff.replace("&nbsp;", " ")
        assert "Good morning from the desk" in diff and 'class="diff_add"' in diff
        assert "No change." in diff  # the subject and text did not change

        actions = [
            (e.staff_email, e.action, e.target)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
        assert actions == [
            (STAFF, "template.save", "edition v2"),
            (STAFF, "template.publish", "edition v2"),
            (STAFF, "template.test_send", "edition v2"),
            (STAFF, "template.rollback", "edition v1"),
        ]
        log = staff.get("/admin/audit").get_data(as_text=True)
        assert "template.rollback" in log and STAFF in log

    def test_the_layout_is_edited_and_published_like_an_email(self, app, staff, session):
        edition = build_edition(app, session, count=2)
        layout = default_parts(LAYOUT)
        response = post(
            staff,
            "/admin/templates/_layout",
            {
                **layout,
                "mjml": layout["mjml"].replace(
                    'background-color="#f4f4f0"', 'background-color="#fdf0e0"'
                ),
            },
        )
        assert response.status_code == 303
        post(staff, "/admin/templates/_layout/versions/2/publish")
        assert "#fdf0e0" in variant_html(session, edition.id)


class TestFallback:
    def test_a_published_version_broken_at_send_time_falls_back_to_the_last_good_one(
        self, app, staff, session
    ):
        edition = build_edition(app, session, count=4)
        # v2 works, and renders for real once (the unsent edition is re-rendered on publish).
        v2 = save(
            staff,
            with_mjml(
                "{% for story in stories %}",
                "<mj-text>Version two</mj-text>\n{% for story in stories %}",
            ),
        )
        post(staff, f"/admin/templates/edition/versions/{v2}/publish")
        assert "Version two" in variant_html(session, edition.id)
        # v3 passes its checks (the sample has 10 stories) but this edition has 4.
        v3 = save(
            staff,
            with_mjml(
                "{% for story in stories %}",
                "<mj-text>Version three: also read {{ stories[7].title }}</mj-text>\n"
                "{% for story in stories %}",
            ),
        )
        response = post(staff, f"/admin/templates/edition/versions/{v3}/publish")
        assert response.status_code == 303
        # The edition went on with version 2, in every variant, and says why.
        for plan in Plan:
            html = variant_html(session, edition.id, plan)
            assert "Version two" in html and "Version three" not in html
        [failure] = session.scalars(select(TemplateFailure)).all()
        assert failure.edition_id == edition.id
        assert failure.failed_version.number == v3 and failure.used_version.number == v2
        line = line_of(versions.get_version(session, "edition", v3).mjml, "stories[7]")
        assert f"edition/body.mjml, line {line}" in failure.message
        assert "version 2 was used instead" in failure.message
        page = staff.get(f"/admin/editions/{edition.id}").get_data(as_text=True)
        assert "Template problems" in page and "version 2 was used instead" in page
        assert "version 2 was used instead" in staff.get("/admin/templates/edition").get_data(
            as_text=True
        )

    def test_with_no_good_version_the_files_are_used(self, app, staff, session):
        edition = build_edition(app, session, count=2)
        v2 = save(
            staff,
            with_mjml(
                "{% for story in stories %}",
                "<mj-text>{{ stories[5].title }}</mj-text>\n{% for story in stories %}",
            ),
        )
        post(staff, f"/admin/templates/edition/versions/{v2}/publish")
        html = variant_html(session, edition.id)
        assert html.count("Read both sides") == 2
        [failure] = session.scalars(select(TemplateFailure)).all()
        assert "the default files was used instead" in failure.message

    def test_a_transactional_email_uses_the_published_version_and_survives_its_breaking(
        self, app, client, session, smtp
    ):
        # Versions written directly, as if published earlier (the data may change later).
        parts = default_parts("confirm")
        good = TemplateVersion(
            name="confirm",
            number=2,
            subject="Please confirm, {{ product_name }} reader",
            mjml=parts["mjml"],
            text=parts["text"],
        )
        broken = TemplateVersion(
            name="confirm",
            number=3,
            subject="Confirm {{ confirm_url.missing }}",
            mjml=parts["mjml"],
            text=parts["text"],
        )
        session.add_all([good, broken])
        session.flush()
        session.add(EmailTemplate(name="confirm", published_id=good.id))
        session.commit()
        subscribe(client, smtp, "first@example.com")  # confirms through the emailed link
        message, welcome = smtp.wait_for("first@example.com", count=2)
        assert welcome["Subject"].startswith("Welcome")
        assert message["Subject"] == "Please confirm, Both Sides Daily reader"

        fresh(session)
        session.get(EmailTemplate, "confirm").published_id = broken.id
        session.commit()
        subscribe(app.test_client(), smtp, "second@example.com")
        message = smtp.wait_for("second@example.com", count=2)[0]
        # Version 2 rendered in a real send: it is what the broken version falls back to.
        assert message["Subject"] == "Please confirm, Both Sides Daily reader"
        assert links_in(message, "/confirm/") and path_of(links_in(message, "/confirm/")[0])
        fresh(session)
        [failure] = session.scalars(select(TemplateFailure)).all()
        assert failure.name == "confirm" and failure.edition_id is None
        assert failure.failed_version.number == 3 and failure.used_version.number == 2
        assert "confirm/subject.txt, line 1" in failure.message
