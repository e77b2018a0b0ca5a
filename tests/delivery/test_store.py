"""The ledger store's hand-written statements are pinned to the models: every table and
column they name exists with that name, and every state they write or compare is an enum
value."""

from __future__ import annotations

import re

import pytest

from newsletter.db import Base
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.delivery.store import STATEMENTS
from newsletter.readers.models import Reader, ReaderStatus, Suppression

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
