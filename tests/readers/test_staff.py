"""`newsletter staff add EMAIL`."""

from __future__ import annotations

from sqlalchemy import select

from newsletter.readers.models import Reader
from tests.helpers import subscribe


def test_makes_an_existing_reader_staff(runner, client, session, smtp):
    subscribe(client, smtp, "editor@example.com")
    result = runner.invoke(args=["staff", "add", "Editor@EXAMPLE.com"])
    assert result.exit_code == 0, result.output
    assert "editor@example.com is now staff" in result.output
    assert session.scalar(select(Reader.is_staff)) is True


def test_unknown_address_exits_1_with_a_message(runner, session):
    result = runner.invoke(args=["staff", "add", "nobody@example.com"])
    assert result.exit_code == 1
    assert "No reader with the address nobody@example.com" in result.output
    assert session.scalar(select(Reader)) is None


def test_malformed_address_exits_1_with_a_message(runner):
    result = runner.invoke(args=["staff", "add", "not an address"])
    assert result.exit_code == 1
    assert "doesn't look like an email address" in result.output
