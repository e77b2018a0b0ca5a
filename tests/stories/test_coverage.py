"""Coverage by side, percentages and the blindspot rule (derived from articles, not stored)."""

from __future__ import annotations

import pytest
from flask import Flask

from newsletter.config import Config
from newsletter.errors import ConfigError
from newsletter.stories.coverage import (
    BlindspotRule,
    Side,
    coverage,
    largest_remainder,
    side_of,
)
from newsletter.stories.models import Article, Bias, Outlet, Story


def articles_from(*biases: str, extra_from_first: int = 0) -> list[Article]:
    """One article per outlet (each bias a new outlet), plus extra ones from the first."""
    outlets = [Outlet(slug=f"o{i}", name=f"Outlet {i}", bias=Bias(b)) for i, b in enumerate(biases)]
    articles = [Article(url=f"https://x.example/{o.slug}", headline="h", outlet=o) for o in outlets]
    for n in range(extra_from_first):
        articles.append(Article(url=f"https://x.example/more/{n}", headline="h", outlet=outlets[0]))
    return articles


def sides(left: int, center: int, right: int, unrated: int = 0) -> list[Article]:
    return articles_from(
        *(["left"] * left + ["center"] * center + ["right"] * right + ["unrated"] * unrated)
    )


class TestSides:
    @pytest.mark.parametrize(
        ("bias", "side"),
        [
            ("far_left", Side.LEFT),
            ("left", Side.LEFT),
            ("lean_left", Side.LEFT),
            ("center", Side.CENTER),
            ("lean_right", Side.RIGHT),
            ("right", Side.RIGHT),
            ("far_right", Side.RIGHT),
            ("unrated", None),
        ],
    )
    def test_the_seven_point_scale_collapses_to_three_sides(self, bias, side):
        assert side_of(bias) is side

    def test_an_outlet_counts_once_however_many_articles_it_has(self):
        cov = coverage(articles_from("far_left", "center", "lean_right", extra_from_first=4))
        assert (cov.left, cov.center, cov.right) == (1, 1, 1)
        assert cov.source_count == 3

    def test_the_seed_story_has_no_center(self):
        # Like the seed page: six articles, none of them Center.
        cov = coverage(
            articles_from("left", "lean_left", "far_left", "right", "lean_right", "right")
        )
        assert (cov.left, cov.center, cov.right) == (3, 0, 3)
        assert (cov.left_pct, cov.center_pct, cov.right_pct) == (50, 0, 50)

    def test_unrated_outlets_are_sources_but_not_on_any_side(self):
        cov = coverage(sides(1, 1, 2, unrated=3))
        assert cov.source_count == 7
        assert cov.rated_count == 4
        assert (cov.left_pct, cov.center_pct, cov.right_pct) == (25, 25, 50)

    def test_a_story_object_works_like_its_articles(self):
        story = Story(title="t", overview="o", articles=sides(2, 1, 1))
        assert coverage(story) == coverage(sides(2, 1, 1))


class TestPercentages:
    def test_one_each_adds_to_100(self):
        cov = coverage(sides(1, 1, 1))
        assert (cov.left_pct, cov.center_pct, cov.right_pct) == (34, 33, 33)

    def test_every_mix_adds_to_100_and_each_share_is_within_a_point(self):
        for left in range(9):
            for center in range(9):
                for right in range(9):
                    counts = [left, center, right]
                    total = sum(counts)
                    if not total:
                        continue
                    shares = largest_remainder(counts)
                    assert sum(shares) == 100, counts
                    for count, share in zip(counts, shares, strict=True):
                        assert abs(share - 100 * count / total) < 1, counts

    def test_no_rated_outlet_means_no_percentages(self):
        cov = coverage(sides(0, 0, 0, unrated=2))
        assert (cov.left_pct, cov.center_pct, cov.right_pct) == (0, 0, 0)
        assert cov.source_count == 2
        assert cov.blindspot is None


class TestBlindspot:
    @pytest.mark.parametrize(
        ("left", "center", "right", "expected"),
        [
            (0, 2, 3, Side.LEFT),  # the left ignores it
            (1, 2, 3, Side.LEFT),  # 1 of 6 is below 20%
            (1, 1, 3, None),  # 1 of 5 is exactly 20%: not below
            (3, 1, 0, Side.RIGHT),
            (4, 2, 1, Side.RIGHT),  # 1 of 7
            (0, 0, 3, Side.LEFT),
            (0, 1, 1, None),  # two rated outlets are too few to tell
            (0, 5, 0, None),  # both sides ignore it: no one side's blindspot
            (1, 8, 1, None),
            (2, 2, 2, None),
        ],
    )
    def test_default_rule(self, left, center, right, expected):
        assert coverage(sides(left, center, right), BlindspotRule()).blindspot is expected

    def test_unrated_outlets_do_not_count_towards_the_minimum(self):
        assert coverage(sides(0, 1, 1, unrated=5), BlindspotRule()).blindspot is None

    def test_thresholds_are_configurable(self):
        articles = sides(1, 1, 3)  # left share 20%
        assert coverage(articles, BlindspotRule(max_share=0.2)).blindspot is None
        assert coverage(articles, BlindspotRule(max_share=0.25)).blindspot is Side.LEFT
        assert coverage(articles, BlindspotRule(max_share=0.25, min_sources=6)).blindspot is None

    def test_thresholds_come_from_the_environment(self):
        env = {"SECRET_KEY": "k" * 40, "BLINDSPOT_MAX_SHARE": "0.25", "BLINDSPOT_MIN_SOURCES": "5"}
        cfg = Config.from_env(env)
        assert (cfg.BLINDSPOT_MAX_SHARE, cfg.BLINDSPOT_MIN_SOURCES) == (0.25, 5)
        defaults = Config.from_env({"SECRET_KEY": "k" * 40})
        assert (defaults.BLINDSPOT_MAX_SHARE, defaults.BLINDSPOT_MIN_SOURCES) == (0.2, 3)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("BLINDSPOT_MAX_SHARE", "a fifth"),
            ("BLINDSPOT_MAX_SHARE", "1.5"),
            ("BLINDSPOT_MIN_SOURCES", "0"),
            ("BLINDSPOT_MIN_SOURCES", "three"),
        ],
    )
    def test_bad_thresholds_stop_the_app(self, name, value):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({"SECRET_KEY": "k" * 40, name: value})

    def test_inside_the_app_the_configured_rule_applies(self):
        app = Flask(__name__)
        app.config.update(BLINDSPOT_MAX_SHARE=0.25, BLINDSPOT_MIN_SOURCES=5)
        articles = sides(1, 1, 3)
        assert coverage(articles).blindspot is None  # outside the app: the defaults
        with app.app_context():
            assert coverage(articles).blindspot is Side.LEFT


@pytest.mark.parametrize("app_settings", [{"BLINDSPOT_MIN_SOURCES": 6}])
def test_the_app_factory_passes_the_thresholds_on(app):
    with app.app_context():
        assert BlindspotRule.current() == BlindspotRule(max_share=0.2, min_sources=6)
        assert coverage(sides(0, 2, 3)).blindspot is None  # 5 rated outlets < 6
