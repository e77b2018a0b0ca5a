"""`newsletter outlets ratings import FILE`: CSV and JSON Lines keyed by domain, the
mapping onto the 7-point scale, staff ratings kept, bad rows rejected with reasons."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from newsletter.stories.models import Bias, Factuality, Outlet, RatingSource
from tests.admin.conftest import fresh

MBFC_ROWS = [
    # (source, bias, factual_reporting) shaped like MBFC's export
    ("leftvoice.example", "left", "mixed"),
    ("www.leanleft.example", "left-center", "high"),
    ("middle.example", "least biased", "very high"),
    ("leanright.example", "right-center", "mostly factual"),
    ("rightwing.example", "right", "mixed"),
    ("farleft.example", "extreme-left", "low"),
    ("farright.example", "far right", "very low"),
    ("staffrated.example", "right", "low"),
]

OUTLET_URLS = {
    "left-voice": "https://leftvoice.example/",
    "lean-left": "https://www.leanleft.example/news",
    "middle": "https://news.middle.example/",  # a subdomain of a rated domain
    "lean-right": "https://leanright.example/",
    "right-wing": "https://rightwing.example/",
    "far-left": "https://farleft.example/",
    "far-right": "https://farright.example/",
    "staff-rated": "https://staffrated.example/",
    "nobody": "https://unknown.example/",
}

EXPECTED = {
    "left-voice": (Bias.LEFT, Factuality.MIXED),
    "lean-left": (Bias.LEAN_LEFT, Factuality.HIGH),
    "middle": (Bias.CENTER, Factuality.VERY_HIGH),
    "lean-right": (Bias.LEAN_RIGHT, Factuality.MOSTLY_FACTUAL),
    "right-wing": (Bias.RIGHT, Factuality.MIXED),
    "far-left": (Bias.FAR_LEFT, Factuality.LOW),
    "far-right": (Bias.FAR_RIGHT, Factuality.VERY_LOW),
}


@pytest.fixture
def outlets(app):
    with app.extensions["db"].session() as s:
        for slug, url in OUTLET_URLS.items():
            s.add(Outlet(slug=slug, name=slug, url=url))
        s.flush()
        staff = s.scalar(select(Outlet).where(Outlet.slug == "staff-rated"))
        staff.bias, staff.factuality = Bias.CENTER, Factuality.HIGH
        staff.rating_source, staff.rating_set_by = RatingSource.STAFF, "editor@example.com"


def ratings(session) -> dict[str, tuple[Bias, Factuality, RatingSource | None, str | None]]:
    fresh(session)
    return {
        o.slug: (o.bias, o.factuality, o.rating_source, o.rating_set_by)
        for o in session.scalars(select(Outlet))
    }


def write_jsonl(path, rows) -> None:
    path.write_text(
        "".join(
            json.dumps({"source": s, "bias": b, "factual_reporting": f, "country": "usa"}) + "\n"
            for s, b, f in rows
        )
    )


def test_jsonl_maps_onto_the_scale_and_keeps_staff_ratings(runner, session, outlets, tmp_path):
    path = tmp_path / "mbfc.jsonl"
    write_jsonl(path, MBFC_ROWS)
    result = runner.invoke(args=["outlets", "ratings", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "8 accepted, 0 rejected" in result.output
    assert "7 rated, 0 unchanged, 1 kept their staff rating" in result.output
    found = ratings(session)
    for slug, (bias, fact) in EXPECTED.items():
        assert found[slug] == (bias, fact, RatingSource.RATINGS_FILE, "ratings file mbfc.jsonl")
    assert found["staff-rated"] == (
        Bias.CENTER,
        Factuality.HIGH,
        RatingSource.STAFF,
        "editor@example.com",
    )
    assert found["nobody"][:3] == (Bias.UNRATED, Factuality.UNRATED, None)
    again = runner.invoke(args=["outlets", "ratings", "import", str(path)])
    assert "0 rated, 7 unchanged" in again.output


def test_csv_with_bad_rows_applies_the_good_and_exits_1(runner, session, outlets, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "source,bias,factual_reporting,press_freedom\n"
        "leftvoice.example,left,high,free\n"
        "not a domain,left,high,free\n"
        "rightwing.example,pro-science,high,free\n"
        "farleft.example,left,sometimes,free\n"
        "leftvoice.example,right,low,free\n"
        "middle.example,,,free\n"
        "farright.example,,low,free\n"
    )
    result = runner.invoke(args=["outlets", "ratings", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert "2 accepted, 5 rejected" in result.output
    assert "line 3: source 'not a domain' is not a domain name" in result.output
    assert "line 4: bias 'pro science' is not on the left–right scale" in result.output
    assert "line 5: factual_reporting 'sometimes' is not a known rating" in result.output
    assert "line 6: leftvoice.example is rated already on line 2" in result.output
    assert "line 7: neither bias nor factual_reporting is given" in result.output
    found = ratings(session)
    assert found["left-voice"][:2] == (Bias.LEFT, Factuality.HIGH)
    assert found["far-right"][:2] == (Bias.UNRATED, Factuality.LOW)
    assert found["right-wing"][:2] == (Bias.UNRATED, Factuality.UNRATED)


def test_unreadable_files_exit_1(runner, outlets, tmp_path):
    missing = runner.invoke(args=["outlets", "ratings", "import", str(tmp_path / "none.csv")])
    assert missing.exit_code != 0
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00junk")
    result = runner.invoke(args=["outlets", "ratings", "import", str(binary)])
    assert result.exit_code == 1 and "not UTF-8" in result.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"source": "a.example", "bias": "left"}\n{"source": \n[1, 2]\n')
    result = runner.invoke(args=["outlets", "ratings", "import", str(broken)])
    assert result.exit_code == 1
    assert "line 2: not valid JSON" in result.output
    assert "line 3: a row must be an object" in result.output


def test_stories_import_rating_counts_as_staff(app, runner, session, tmp_path):
    doc = {
        "outlets": [
            {"slug": "wire", "name": "Wire", "url": "https://wire.example/", "bias": "center"}
        ],
        "stories": [],
    }
    (tmp_path / "s.json").write_text(json.dumps(doc))
    assert runner.invoke(args=["stories", "import", str(tmp_path / "s.json")]).exit_code == 0
    write_jsonl(tmp_path / "r.jsonl", [("wire.example", "right", "low")])
    result = runner.invoke(args=["outlets", "ratings", "import", str(tmp_path / "r.jsonl")])
    assert "1 kept their staff rating" in result.output
    assert ratings(session)["wire"][:3] == (Bias.CENTER, Factuality.UNRATED, RatingSource.STAFF)
