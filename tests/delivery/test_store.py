"""The ledger store's hand-written statements are pinned to the models: every table and
column they name exists with that name, every state they write or compare is an enum
value, and BOUNCE leaves a reader exactly as `record_bounce` does."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import select

from newsletter.billing.entitlement import Plan
from newsletter.db import Base
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.delivery.store import STATEMENTS, Claimed, LedgerStore
from newsletter.readers.models import Reader, ReaderStatus, Suppression
from newsletter.readers.suppression import record_bounce
from tests.delivery.conftest import add_readers

KEYWORDS = {
    "UPDATE", "SET", "WHERE", "IN", "SELECT", "FROM", "AND", "OR", "NOT", "EXISTS", "IS",
    "NULL", "ORDER", "BY", "LIMIT", "FOR", "SKIP", "LOCKED", "RETURNING", "TRUE", "FALSE",
    "COALESCE", "CASE", "WHEN", "THEN", "ELSE", "END", "1",
}  # fmt: skip
TABLES = Base.metadata.tables
# The enum each column compared with or set to a literal holds.
ENUMS = {"state": DeliveryState, "status": ReaderStatus, "suppression": Suppression}
_LITERAL = re.compile(r"'([^']*)'")


def _names(sql: str) -> list[str]:
    sql = _LITERAL.sub(" ", sql)
    sql = re.sub(r":\w+|\{\w+\}", " ", sql)
    return re.findall(r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)?|\d+", sql)


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_every_table_and_column_named_is_the_models(name: str) -> None:
    names = [n for n in _names(STATEMENTS[name]) if n.upper() not in KEYWORDS]
    tables = [n for n in names if n in TABLES]
    assert tables, "a statement names its table"
    for n in names:
        if "." in n:
            table, column = n.split(".")
            assert column in TABLES[table].c, f"{name}: {n} is not a column of the model"
        elif n not in TABLES:
            assert any(n in TABLES[t].c for t in tables), f"{name}: no table named has {n}"


def test_the_ledger_statements_are_on_the_delivery_model() -> None:
    assert Delivery.__table__.name == "deliveries" and Reader.__table__.name == "readers"
    for column, enum in ENUMS.items():
        table = TABLES["deliveries" if column == "state" else "readers"]
        assert table.c[column].type.enum_class is enum  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_every_state_literal_is_a_value_of_its_columns_enum(name: str) -> None:
    sql = STATEMENTS[name]
    allowed = {v.value for c, enum in ENUMS.items() if re.search(rf"\b{c}\b", sql) for v in enum}
    assert set(_LITERAL.findall(sql)) <= allowed
    # Every comparison of `state` is with DeliveryState values.
    for group in re.findall(r"\bstate\s*(?:=|IN)\s*\(?((?:'[^']*'(?:,\s*)?)+)", sql):
        assert set(_LITERAL.findall(group)) <= {s.value for s in DeliveryState}, name


# Each reader's state before the bounce: (status, suppression, earlier reason).
BEFORE = {
    "confirmed": (ReaderStatus.CONFIRMED, None, None),
    "unsubscribed": (ReaderStatus.UNSUBSCRIBED, None, None),
    "bounced-before": (ReaderStatus.CONFIRMED, Suppression.BOUNCED, "550 earlier"),
    "bounced-without-reason": (ReaderStatus.BOUNCED, None, None),
    "complained": (ReaderStatus.UNSUBSCRIBED, Suppression.COMPLAINED, "complaint: spam"),
    "staff": (ReaderStatus.BOUNCED, Suppression.STAFF, "asked by phone"),
}
REPLY = "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1  gone"


@pytest.mark.parametrize("before", sorted(BEFORE))
def test_bounce_gives_the_row_record_bounce_gives(app: Flask, before: str) -> None:
    status, suppression, reason = BEFORE[before]
    earlier = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    now = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    db = app.extensions["db"]
    orm_reader, sql_reader = add_readers(app, 2, status=status)
    with db.session() as session:
        for reader in session.scalars(select(Reader)):
            reader.suppression = suppression
            reader.suppressed_at = earlier if suppression else None
            reader.suppressed_reason = reason
    with db.session() as session:
        record_bounce(session, session.get(Reader, orm_reader.id), REPLY, now=now)
    store = LedgerStore(db, "test:1")
    try:
        store.bounced(Claimed(0, sql_reader.id, Plan.FREE, DeliveryState.SENDING, 1), REPLY, now)
        store.flush()
    finally:
        store.close()

    def row(reader_id: int) -> tuple[object, ...]:
        with db.session() as session:
            r = session.get(Reader, reader_id)
            assert r is not None
            return (r.status, r.suppression, r.suppressed_at, r.suppressed_reason)

    assert row(sql_reader.id) == row(orm_reader.id)
