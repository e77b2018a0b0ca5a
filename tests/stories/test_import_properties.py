"""The importer's URL rule, and a property test: random documents never make it raise."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.stories.importing import import_stories
from newsletter.stories.models import Article, Outlet, Story
from tests.stories.builders import OUTLETS, article, document, story

NOW = datetime(2025, 5, 15, 12, 0, tzinfo=UTC)
URL_REASON = "must be an absolute http:// or https:// URL in ASCII (percent-encoded)"
# What a URL may not hold unencoded: RFC 3986's excluded characters, and all but ASCII.
REFUSED = re.compile(r'[\x00-\x20"<>\\^`{|}\x7f-\U0010ffff]|%(?![0-9A-Fa-f]{2})')


class TestUrlCharacters:
    @pytest.mark.parametrize(
        "url",
        [
            'https://news.example/a"onmouseover="x',
            "https://news.example/<script>",
            "https://news.example/a>b",
            "https://news.example/a b",
            "https://news.example/a\tb",
            "https://news.example/a\x7fb",
            "https://news.example/a\x1bb",
            "https://news.example/a\\b",
            "https://news.example/a{b}",
            "https://news.example/a|b",
            "https://news.example/a^b",
            "https://news.example/a`b",
            "https://news.example/100%",
            "https://news.example/%zz",
        ],
    )
    def test_article_and_outlet_urls_with_refused_characters_are_rejected(
        self, session: Session, url: str
    ) -> None:
        outlet = {"slug": "inline", "name": "Inline", "bias": "left", "url": url}
        bad_article = story("bad-article", articles=[article(1, "lefty", url=url)])
        bad_outlet = story("bad-outlet", articles=[article(2, outlet)])
        listed = [*OUTLETS, {"slug": "listed", "name": "Listed", "bias": "right", "url": url}]

        report = import_stories(
            session, document(story("good"), bad_article, bad_outlet, outlets=listed), now=NOW
        )

        assert {(e.path, e.reason) for e in report.errors} == {
            ("stories[1].articles[0].url", URL_REASON),
            ("stories[2].articles[0].outlet.url", URL_REASON),
            ("outlets[3].url", URL_REASON),
        }
        assert report.created == ["good"]
        assert (
            session.scalars(select(Outlet.slug).where(Outlet.slug.in_(["inline", "listed"]))).all()
            == []
        )

    @pytest.mark.parametrize(
        "url",
        [
            "https://news.example/a%20b%22c?q=x&y=%3C1%3E#frag",
            "http://news.example:8080/path;p=1/(x)/*+,!$'@~",
            "https://[2001:db8::1]/v6",
        ],
    )
    def test_urls_of_allowed_characters_are_kept_as_given(self, session: Session, url: str) -> None:
        report = import_stories(
            session, document(story("s", articles=[article(1, url=url)])), now=NOW
        )
        assert report.errors == []
        assert session.scalar(select(Article.url)) == url


# --- the property ------------------------------------------------------------------------


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` about 9 times in 10, so that records are accepted as well as rejected.
    (Hypothesis favours the ends of a range, so the rare branch is in its middle.)"""
    return st.integers(1, 10).flatmap(lambda n: bad if n == 5 else good)


_text = st.text(min_size=1, max_size=40)
_any_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text)
_slugs = _mostly(st.from_regex(r"[a-z0-9]{1,6}(-[a-z0-9]{1,4}){0,2}", fullmatch=True), _text)
_url_chars = st.one_of(
    st.sampled_from(list("abc/.-_~:?#[]@!$&'()*+,;=%") + ['"', "<", ">", " ", "\\", "|", "^", "`"]),
    st.characters(),
    st.sampled_from(["%20", "%zz", "\x00", "\x7f", "\n", "é"]),
)
_allowed_url = st.builds(
    lambda host, path: f"https://{host}/{path}",
    st.sampled_from(["news.example", "b.example:8443"]),
    st.from_regex(r"([A-Za-z0-9._~:/?#@!$&'()*+,;=-]|%[0-9A-F]{2}){0,20}", fullmatch=True),
)
_urls = _mostly(
    _allowed_url,
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{''.join(path)}",
        st.sampled_from(["https", "http", "HTTPS", "ftp", "javascript"]),
        st.sampled_from(
            ["news.example", "a.example:80", "", "[::1]", "bad host", "x.example:99999"]
        ),
        st.lists(_url_chars, max_size=12),
    ),
)
_datetimes = _mostly(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.one_of(
        st.sampled_from(
            ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "2024-02-30T00:00:00Z"]
        ),
        _text,
    ),
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is now and then missing or of the wrong type."""
    return _mostly(value, st.one_of(_any_scalar, st.just(""), st.just(_MISSING)))


_MISSING = object()


def _record(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: _maybe(value) for name, value in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not _MISSING}
    )


_outlets = _record(
    slug=_slugs,
    name=_text,
    url=_urls,
    bias=_mostly(st.sampled_from(["left", "center", "far_right", "unrated"]), st.just("extreme")),
    factuality=_mostly(st.sampled_from(["high", "mixed"]), st.just("sort of")),
)
_articles = _record(
    outlet=st.one_of(st.sampled_from([o["slug"] for o in OUTLETS]), _slugs, _outlets),
    url=_urls,
    headline=_text,
    published_at=_datetimes,
)
_stories = _record(
    external_id=st.one_of(st.sampled_from(["p-1", "p-2", "p-3"]), _text),
    slug=_slugs,
    title=_text,
    overview=_text,
    analysis_left=st.one_of(st.none(), _text),
    faq=st.lists(_record(question=_text, answer=_text), max_size=2),
    topics=st.lists(_text, max_size=3),
    published_at=_datetimes,
    articles=st.lists(_articles, min_size=1, max_size=3),
)
_documents = st.integers(0, 9).flatmap(
    lambda n: (
        st.one_of(_any_scalar, st.lists(_any_scalar, max_size=2))
        if n == 0
        else _record(
            outlets=st.lists(_outlets, max_size=2).map(lambda extra: [*OUTLETS, *extra]),
            stories=st.lists(_stories, min_size=1, max_size=3),
        )
    )
)


def _rows(session: Session) -> tuple[set[str], set[str], set[str], set[str | None]]:
    return (
        set(session.scalars(select(Story.external_id))),
        set(session.scalars(select(Outlet.slug))),
        set(session.scalars(select(Article.url))),
        set(session.scalars(select(Outlet.url))),
    )


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=_documents)
def test_random_documents_are_accepted_or_rejected_with_reasons(
    session: Session, data: Any
) -> None:
    """Whatever comes in, the importer answers: each record accepted or rejected with a
    reason, a rejected record writes nothing, and no stored URL holds a refused character."""
    stories_before, outlets_before, _, _ = _rows(session)

    report = import_stories(session, data, now=NOW)
    session.commit()
    event(f"stories accepted: {len(report.stories)}")

    assert all(e.reason and isinstance(e.reason, str) for e in report.errors)
    stories_after, outlets_after, article_urls, outlet_urls = _rows(session)
    if not isinstance(data, dict) or any(e.record is None for e in report.errors):
        assert report.errors and not report.stories and not report.outlets
    else:
        rejected = set(report.rejected)
        for collection in ("outlets", "stories"):
            records = data.get(collection, [])
            for index in range(len(records) if isinstance(records, list) else 0):
                ref = f"{collection}[{index}]"
                record = records[index]
                name = "slug" if collection == "outlets" else "external_id"
                key = record.get(name) if isinstance(record, dict) else None
                done = report.outlets if collection == "outlets" else report.stories
                # Accepted (by its key), or rejected with its own entry in the errors.
                assert ref in rejected or (isinstance(key, str) and key in done), ref
    # Only accepted records wrote rows: a new row is always one the report accepted.
    assert stories_after - stories_before <= set(report.stories)
    assert outlets_after - outlets_before <= set(report.outlets)
    for url in article_urls | {u for u in outlet_urls if u is not None}:
        assert not REFUSED.search(url), url
        assert url.lower().startswith(("http://", "https://")), url
