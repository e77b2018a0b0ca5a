"""Each variant renders once; per reader only the holes are filled."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser

from sqlalchemy import select

from newsletter.billing.entitlement import Plan
from newsletter.editions.assembly import MAX_STORIES, assemble
from newsletter.editions.models import EditionVariant
from newsletter.editions.personalize import EditionMessages, Recipient
from newsletter.mail.message import now_header
from newsletter.tokens import LinkSigner
from tests.conftest import TEST_SECRET
from tests.editions.test_assembly import DAY, NOON, load, make_story
from tests.mail.test_mail import check_wire_format


def build_edition(app, session, count: int = MAX_STORIES):  # type: ignore[no-untyped-def]
    load(
        session,
        *[make_story(n, words=60, left=n % 4, center=2, right=3 - n % 4) for n in range(count)],
    )
    with app.app_context():
        edition = assemble(session, DAY, now=NOON).edition
        session.commit()
    return edition


def parse(data: bytes):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(data)


class TestVariants:
    def test_each_plan_has_its_own_variant_under_the_gmail_clip(self, app, session):
        edition = build_edition(app, session)
        variants = {
            v.plan: v
            for v in session.scalars(
                select(EditionVariant).where(EditionVariant.edition_id == edition.id)
            )
        }
        assert set(variants) == set(Plan)
        for variant in variants.values():
            assert len(variant.html.encode()) < 102 * 1024
            assert variant.html.count("Read both sides") == MAX_STORIES
            assert "<mj-" not in variant.html
        assert "free stories left this month" in variants[Plan.FREE].html
        assert "days left" in variants[Plan.TRIAL].html
        assert (
            "free stories" not in variants[Plan.PAID].html
            and "trial" not in variants[Plan.PAID].html
        )

    def test_coverage_bar_is_table_cells_with_percentages(self, app, session):
        edition = build_edition(app, session, count=1)
        html = edition.variant(Plan.PAID).html
        # Story 0: 0 left, 2 center, 3 right outlets -> 0% / 40% / 60%; no image anywhere.
        assert "5 outlets covered it: 0 left, 2 center, 3 right" in html
        assert re.search(r'<td[^>]*width="40%"[^>]*>C 40%</td>', html)
        assert re.search(r'<td[^>]*width="60%"[^>]*>R 60%</td>', html)
        assert "<img" not in html


class TestPersonalization:
    def test_every_reader_gets_only_their_own_links_and_counts(self, app, session):
        edition = build_edition(app, session)
        messages = EditionMessages(app, edition)
        signer = LinkSigner(TEST_SECRET)
        for reader_id, plan, left in (
            (11, Plan.FREE, 3),
            (12, Plan.FREE, 9),
            (13, Plan.TRIAL, 0),
            (14, Plan.PAID, 0),
        ):
            recipient = Recipient(
                reader_id, f"r{reader_id}@example.com", plan, free_left=left, trial_days_left=5
            )
            message_id, data = messages.render(recipient, now_header())
            check_wire_format(data)
            msg = parse(data)
            assert msg["To"] == f"r{reader_id}@example.com"
            assert msg["Message-ID"] == message_id
            assert msg["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
            html = msg.get_body(("html",)).get_content()
            text = msg.get_body(("plain",)).get_content()
            links = set(re.findall(r"http://localhost/r/([A-Za-z0-9_-]+)", html + text))
            assert len(links) == MAX_STORIES
            claims = {signer.verify(token) for token in links}
            assert {c.reader_id for c in claims} == {reader_id}
            assert {c.edition_id for c in claims} == {edition.id}
            if plan == Plan.FREE:
                assert f"You have {left} of 10 free stories left" in text
            if plan == Plan.TRIAL:
                assert "Free trial days left: 5." in text
            assert "@@" not in html and "@@" not in text

    def test_message_id_is_stable_per_edition_and_reader(self, app, session):
        edition = build_edition(app, session, count=2)
        messages = EditionMessages(app, edition)
        first, _ = messages.render(Recipient(5, "a@example.com", Plan.PAID), now_header())
        again, _ = EditionMessages(app, edition).render(
            Recipient(5, "a@example.com", Plan.PAID), now_header()
        )
        other, _ = messages.render(Recipient(6, "b@example.com", Plan.PAID), now_header())
        assert first == again != other

    def test_a_real_smtp_server_accepts_the_edition(self, app, session, smtp):
        from newsletter.mail.transports import SmtpTransport

        edition = build_edition(app, session)
        messages = EditionMessages(app, edition)
        transport = SmtpTransport(smtp.url, timeout=5)
        for n, plan in enumerate(Plan):
            _, data = messages.render(
                Recipient(n + 1, f"r{n}@example.com", plan, free_left=4, trial_days_left=6),
                now_header(),
            )
            transport.send_bytes("daily@bothsides.test", f"r{n}@example.com", data)
        transport.close()
        assert len(smtp.received) == 3
        assert [parse(r.data)["Subject"] for r in smtp.received] == [edition.subject] * 3
