"""Alembic is the only way the schema is made, and it agrees with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from newsletter.migrate import models_metadata


def test_migrations_match_the_models(database_url):
    # `database_url` is an empty database brought to head by the migrations alone.
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, models_metadata())
    engine.dispose()
    assert diff == []


def test_every_model_table_exists_after_upgrade(database_url):
    engine = create_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {t.name for t in models_metadata().sorted_tables} <= tables
    assert "alembic_version" in tables


def test_db_upgrade_command_on_an_empty_database(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/fresh.db"
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "db", "upgrade"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "NEWSLETTER_INSTANCE": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    engine = create_engine(url)
    assert "readers" in inspect(engine).get_table_names()
    engine.dispose()
