"""Properties of the parsers that face the outside: feed item text and ratings rows."""

from __future__ import annotations

import html

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.feeds.parsing import plain_text
from newsletter.feeds.ratings import (
    BIAS_MAP,
    FACTUALITY_MAP,
    Rating,
    normalize_domain,
    parse_row,
    read_rows,
)
from newsletter.inputs import storable

words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
tags = st.sampled_from(["b", "i", "p", "a", "span", "em", "script", "style", "img", "br"])


@st.composite
def html_fragments(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        tag = draw(tags)
        inner = html.escape(draw(words))
        parts.append(
            draw(st.sampled_from([f"<{tag}>{inner}</{tag}>", inner, f"<{tag}/>", "&amp;"]))
        )
    return "".join(parts)


@settings(max_examples=200, deadline=None)
@given(st.one_of(words, html_fragments()))
def test_plain_text_has_no_markup_and_normalised_whitespace(fragment: str) -> None:
    text = plain_text(fragment)
    assert text == " ".join(text.split())
    assert "<script" not in text.lower() or "<script" in html.unescape(fragment).lower()
    assert all(ch.isprintable() or ch == " " for ch in text)
    # Idempotent on its own output once markup characters are escaped again.
    assert plain_text(html.escape(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abc xyz", min_size=1, max_size=40))
def test_text_without_markup_survives(text: str) -> None:
    assert plain_text(text) == " ".join(text.split())


@settings(max_examples=100, deadline=None)
@given(words)
def test_script_content_never_reaches_the_text(secret: str) -> None:
    secret = secret.replace("<", "").replace("&", "")
    text = plain_text(f"before<script>{html.escape(secret)}X1</script>after")
    assert "X1" not in text and text.startswith("before")


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), words)
def test_limit_is_kept(limit: int, text: str) -> None:
    assert len(plain_text(text, limit)) <= limit + 1


values = st.one_of(
    st.none(), st.integers(), st.text(max_size=40), st.lists(st.integers(), max_size=2)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["source", "bias", "factual_reporting", "x"]), values))
def test_any_row_is_a_rating_or_a_reason(row: dict) -> None:
    result = parse_row(row)
    if isinstance(result, str):
        assert result and storable(result)
    else:
        assert isinstance(result, Rating)
        assert normalize_domain(result.domain) == result.domain


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(BIAS_MAP)),
    st.sampled_from(sorted(FACTUALITY_MAP)),
    st.sampled_from(["example.com", "WWW.Example.com", "https://news.example.co.uk/", "a-b.org"]),
    st.booleans(),
)
def test_known_values_map_whatever_their_case_and_dashes(bias, fact, domain, shout) -> None:
    spelled = bias.replace(" ", "-") if shout else bias.upper()
    result = parse_row({"source": domain, "bias": spelled, "factual_reporting": fact.title()})
    if BIAS_MAP[bias].value == "unrated" and FACTUALITY_MAP[fact].value == "unrated":
        assert isinstance(result, str)
    else:
        assert isinstance(result, Rating)
        assert (result.bias, result.factuality) == (BIAS_MAP[bias], FACTUALITY_MAP[fact])
        assert not result.domain.startswith("www.") and result.domain == result.domain.lower()


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.text(alphabet='ab,"\n{}:x', max_size=30), max_size=8).map("\n".join),
        st.just("source,bias\n" + "x" * 200_000),
    )
)
def test_any_file_reads_as_rows_or_reasons(text: str) -> None:
    for number, row in read_rows(text):
        assert number >= 1
        result = row if isinstance(row, str) else parse_row(row)
        assert isinstance(result, (str, Rating))


def test_block_tags_keep_words_apart_and_inline_tags_do_not_split_them() -> None:
    assert plain_text("end.</p><p>Next<br>line <b>bold</b>, done") == "end. Next line bold, done"
