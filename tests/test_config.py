"""Configuration from the environment; production refuses insecure settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from newsletter.config import Config, normalize_database_url
from newsletter.errors import ConfigError

GOOD_SECRET = "s" * 40


class TestConfig:
    def test_defaults_match_the_interface(self, tmp_path, monkeypatch):
        monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
        cfg = Config.from_env({})
        assert cfg.DATABASE_URL == "sqlite:///instance/newsletter.db"
        assert cfg.BASE_URL == "http://localhost:5000"
        assert cfg.MAIL_URL == "outbox:"
        assert cfg.MAIL_FROM == "Both Sides Daily <daily@localhost>"
        assert (cfg.FREE_STORIES_PER_MONTH, cfg.TRIAL_DAYS) == (10, 7)
        assert cfg.STRIPE_SECRET_KEY is None

    def test_development_secret_is_generated_once_and_kept(self, tmp_path, monkeypatch):
        monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
        first = Config.from_env({}).SECRET_KEY
        assert len(first) >= 32
        assert first == Config.from_env({}).SECRET_KEY
        assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
            ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
            ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
            ("sqlite:///x.db", "sqlite:///x.db"),
        ],
    )
    def test_database_urls(self, url, expected):
        assert normalize_database_url(url) == expected

    def test_production_needs_a_secret_key(self):
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            Config.from_env({"NEWSLETTER_ENV": "production", "MAIL_URL": "smtp://relay"})

    def test_production_refuses_debug(self):
        env = {
            "NEWSLETTER_ENV": "production",
            "SECRET_KEY": GOOD_SECRET,
            "FLASK_DEBUG": "1",
            "MAIL_URL": "smtp://relay",
        }
        with pytest.raises(ConfigError, match="debug"):
            Config.from_env(env)

    def test_production_refuses_the_local_stripe_standin(self, tmp_path):
        env = {
            "NEWSLETTER_ENV": "production",
            "SECRET_KEY": GOOD_SECRET,
            "MAIL_URL": "smtp://relay",
            "POSTAL_ADDRESS": "1 Main St, Springfield",
            "STRIPE_DEV_STANDIN": "1",
        }
        with pytest.raises(ConfigError, match="STRIPE_DEV_STANDIN is for development only"):
            Config.from_env(env)
        # In development it is what `make run` uses.
        assert Config.from_env(
            {"STRIPE_DEV_STANDIN": "1", "SECRET_KEY": GOOD_SECRET}
        ).STRIPE_DEV_STANDIN

    def test_production_with_a_secret_and_an_address_starts(self):
        env = {
            "NEWSLETTER_ENV": "production",
            "SECRET_KEY": GOOD_SECRET,
            "MAIL_URL": "smtp://relay",
            "POSTAL_ADDRESS": "1 Main St, Springfield",
        }
        assert Config.from_env(env).production

    @pytest.mark.parametrize("address", ["", "   "])
    def test_production_needs_a_postal_address(self, address):
        env = {
            "NEWSLETTER_ENV": "production",
            "SECRET_KEY": GOOD_SECRET,
            "MAIL_URL": "smtp://relay",
            "POSTAL_ADDRESS": address,
        }
        with pytest.raises(ConfigError, match="POSTAL_ADDRESS must be set"):
            Config.from_env(env)

    def test_development_runs_without_a_postal_address(self, tmp_path, monkeypatch):
        monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
        assert not Config.from_env({}).production

    @pytest.mark.parametrize("address", ["bounces", "b+x@example.com", "a@b"])
    def test_bounce_address_must_be_plain(self, tmp_path, monkeypatch, address):
        monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
        with pytest.raises(ConfigError, match="BOUNCE_ADDRESS"):
            Config.from_env({"BOUNCE_ADDRESS": address})

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("FREE_STORIES_PER_MONTH", "ten"),
            ("TRIAL_DAYS", "-1"),
            ("RATE_LIMIT_PER_IP", "fast"),
            ("BOUNCE_FETCH_MINUTES", "0"),
        ],
    )
    def test_bad_values_are_clear_errors(self, tmp_path, monkeypatch, name, value):
        monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
        with pytest.raises(ConfigError, match=name):
            Config.from_env({name: value})

    def test_command_line_refuses_to_start_in_production_without_a_secret(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FLASK_DEBUG"}}
        env.update(
            NEWSLETTER_ENV="production",
            MAIL_URL="smtp://relay",
            DATABASE_URL=f"sqlite:///{tmp_path}/x.db",
        )
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 1
        assert "SECRET_KEY must be set" in result.stderr
        assert "Traceback" not in result.stderr
