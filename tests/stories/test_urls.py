"""Canonical article URLs: one spelling per article, tracking parameters gone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.stories.urls import BadArticleUrl, canonical_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM:80/a/b?x=1#frag", "http://example.com/a/b?x=1"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/p", "https://example.com:8443/p"),
        (
            "https://ex.com/p?utm_source=rss&id=7&UTM_Medium=x&fbclid=a&gclid=b&mc_cid=c&mc_eid=d&b=2",
            "https://ex.com/p?id=7&b=2",
        ),
        ("https://ex.com/p?b=2&a=1", "https://ex.com/p?b=2&a=1"),  # order kept
        ("https://user:pw@Ex.com/p", "https://ex.com/p"),
        ("https://ex.com/Path/Case", "https://ex.com/Path/Case"),  # paths are case-sensitive
    ],
)
def test_canonical_form(raw, expected):
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    "raw", ["javascript:alert(1)", "ftp://ex.com/x", "/relative/path", "https://", "http://[::1"]
)
def test_anything_but_absolute_http_is_refused(raw):
    with pytest.raises(BadArticleUrl):
        canonical_url(raw)


_hosts = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True)
_words = st.from_regex(r"[A-Za-z0-9_.~-]{1,8}", fullmatch=True)
_params = st.lists(st.tuples(_words, _words), max_size=5)
_tracking = st.lists(
    st.tuples(st.sampled_from(["utm_source", "utm_campaign", "fbclid", "gclid", "mc_eid"]), _words),
    max_size=3,
)


@given(
    scheme=st.sampled_from(["http", "HTTP", "https", "HtTpS"]),
    host=_hosts,
    port=st.sampled_from(["", ":80", ":443", ":8080"]),
    path=st.lists(_words, max_size=4),
    params=_params,
    tracking=_tracking,
    fragment=st.one_of(st.just(""), _words.map(lambda w: "#" + w)),
)
def test_properties(scheme, host, port, path, params, tracking, fragment):
    query = "&".join(f"{k}={v}" for k, v in [*params, *tracking])
    raw = f"{scheme}://{host}{port}/{'/'.join(path)}{'?' + query if query else ''}{fragment}"
    url = canonical_url(raw)
    # Idempotent, lower-case scheme and host, no fragment, no tracking, other params in order.
    assert canonical_url(url) == url
    assert url.startswith(("http://", "https://"))
    assert host.lower() in url and "#" not in url
    for name, _ in tracking:
        assert f"{name}=" not in url.split("?", 1)[-1] or name in {k for k, _ in params}
    kept = [
        k
        for k, _ in params
        if not k.lower().startswith("utm_")
        and k.lower() not in {"fbclid", "gclid", "mc_eid", "mc_cid"}
    ]
    if kept:
        names = [pair.split("=")[0] for pair in url.split("?", 1)[1].split("&")]
        assert names == kept


@given(st.text(max_size=200))
def test_any_text_is_a_url_or_a_clear_refusal(text):
    try:
        url = canonical_url(text)
    except BadArticleUrl:
        return
    assert url.startswith(("http://", "https://")) and canonical_url(url) == url
