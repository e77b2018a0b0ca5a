"""Time zones (canonical names, aliases from tzdata, the grouped picker), plurals, the
favicon and story times in the reader's zone."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from newsletter.auth.session import session_values
from newsletter.readers.services import validate_timezone
from newsletter.text import plural
from newsletter.timezones import (
    alias_map,
    canonical,
    canonical_names,
    grouped_choices,
    local_time_label,
)
from tests.conftest import csrf_token
from tests.tracking.conftest import make_reader


class TestTimeZones:
    def test_old_aliases_map_to_their_canonical_names(self) -> None:
        assert canonical("Asia/Calcutta") == "Asia/Kolkata"
        assert canonical("US/Eastern") == "America/New_York"
        assert canonical("Europe/Kiev") == "Europe/Kyiv"
        assert canonical("Etc/UTC") == "UTC"
        assert canonical(" Asia/Kolkata ") == "Asia/Kolkata"
        assert canonical("Europe/Amsterdam") == "Europe/Amsterdam"  # in zone.tab: its own
        assert canonical("Mars/Olympus_Mons") is None and canonical("") is None

    def test_every_zone_zoneinfo_knows_is_accepted_and_lands_on_a_real_zone(self) -> None:
        for name in zoneinfo.available_timezones():
            found = canonical(name)
            assert found is not None, name
            # Same clock: an alias and its canonical name agree on the offset today.
            now = datetime.now(UTC)
            assert (
                now.astimezone(zoneinfo.ZoneInfo(name)).utcoffset()
                == now.astimezone(zoneinfo.ZoneInfo(found)).utcoffset()
            ), name
        assert "Asia/Calcutta" in alias_map() and "Asia/Calcutta" not in canonical_names()

    def test_the_picker_is_grouped_by_region_with_offsets_and_no_aliases(self) -> None:
        groups = dict(grouped_choices(datetime(2026, 1, 15, tzinfo=UTC)))
        assert list(groups)[0] == "UTC"
        assert {"Africa", "America", "Asia", "Europe", "Pacific"} <= set(groups)
        asia = {c.name: c.label for c in groups["Asia"]}
        assert asia["Asia/Kolkata"] == "Kolkata (UTC+05:30)"
        assert "Asia/Calcutta" not in asia
        america = {c.name: c.label for c in groups["America"]}
        assert america["America/New_York"] == "New York (UTC-05:00)"
        names = [c.name for choices in groups.values() for c in choices]
        assert len(names) == len(set(names)) and len(names) < 450

    def test_forms_and_browser_values_store_the_canonical_name(self) -> None:
        assert validate_timezone("Asia/Calcutta") == "Asia/Kolkata"
        assert validate_timezone("not a zone", fallback=True) == "UTC"

    @given(st.text(max_size=80))
    def test_any_text_is_a_zone_or_none_never_an_error(self, raw: str) -> None:
        found = canonical(raw)
        assert (
            found is None or found in canonical_names() or found in zoneinfo.available_timezones()
        )

    def test_local_time_labels(self) -> None:
        moment = datetime(2026, 7, 1, 12, 30, tzinfo=UTC)
        assert local_time_label(moment, "Asia/Calcutta") == "Jul 01, 18:00 IST"
        assert local_time_label(moment, None) == "Jul 01, 12:30 UTC"
        assert local_time_label(moment, "America/Sao_Paulo") == "Jul 01, 09:30 UTC-03:00"


class TestPlurals:
    def test_one_and_many(self) -> None:
        assert plural(1, "reader") == "1 reader"
        assert plural(0, "reader") == "0 readers"
        assert plural(2, "story") == "2 stories"
        assert plural(1, "story") == "1 story"
        assert plural(3, "day") == "3 days"
        assert plural(2, "free story", "free stories") == "2 free stories"

    def test_no_template_counts_with_a_fixed_plural(self) -> None:
        from pathlib import Path

        root = Path(__file__).resolve().parents[1] / "templates" / "web"
        pattern = re.compile(r"\{\{[^}]*\}\}\s+(readers|stories|articles|sources|outlets)\b")
        for path in root.rglob("*.html"):
            text = path.read_text()
            assert "(s)" not in text, path
            found = [
                m.group(0)
                for m in pattern.finditer(text)
                if not any(w in m.group(0) for w in (".value", "capitalize"))
            ]
            assert not found, (path, found)

    def test_dashboard_says_1_reader(self, app, client, session) -> None:  # type: ignore[no-untyped-def]
        with app.test_request_context():
            rendered = app.jinja_env.from_string("{{ 1|plural('reader') }} met the paywall")
            assert rendered.render() == "1 reader met the paywall"


class TestFavicon:
    def test_served_at_the_root_and_linked_from_every_page(self, client) -> None:  # type: ignore[no-untyped-def]
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
        page = client.get("/signin").get_data(as_text=True)
        link = re.search(r'<link rel="icon" href="([^"]+)"', page)
        assert link and client.get(link.group(1)).status_code == 200


class TestAccountPicker:
    def test_the_account_picker_and_saving_an_alias(self, client, session) -> None:  # type: ignore[no-untyped-def]
        reader = make_reader(session, "tz@example.com", timezone="Asia/Calcutta")
        session.commit()
        with client.session_transaction() as cookie:
            cookie.update(session_values(reader))
        page = client.get("/account").get_data(as_text=True)
        assert '<optgroup label="Asia">' in page
        assert '<option value="Asia/Kolkata" >Kolkata (UTC+05:30)</option>' in page
        # An old stored alias is still shown selected rather than silently changed.
        assert '<option value="Asia/Calcutta" selected>' in page
        saved = client.post(
            "/account/delivery",
            data={
                "delivery_hour": "7",
                "timezone": "Asia/Calcutta",
                "csrf_token": csrf_token(client, "/account"),
            },
            follow_redirects=True,
        )
        assert saved.status_code == 200
        session.refresh(reader)
        assert reader.timezone == "Asia/Kolkata"
