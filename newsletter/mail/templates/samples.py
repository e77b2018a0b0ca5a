"""Realistic sample data for previewing and checking every email.

Each email has one or more variants (the edition one per plan; the sign-in email its two
reasons); a template must render with every one. An email without an entry here (one
added later) gets a placeholder for each variable its default files use, so it can still
be previewed; add an entry here to make its preview realistic.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import current_app
from jinja2 import meta

from newsletter.editions.assembly import subject_for
from newsletter.editions.rendering import story_context
from newsletter.mail.render import LAYOUT, environment_for, template_names
from newsletter.mail.render import default_sources as file_sources
from newsletter.mail.sending import common_context
from newsletter.stories.coverage import Coverage, Side
from newsletter.stories.models import Article, Bias, Factuality, Outlet, Story

SAMPLE_STORIES = [
    (
        "Senate passes stopgap funding bill hours before shutdown deadline",
        "The measure keeps the government open through March and drops the disputed border "
        "provisions; both parties claimed the outcome as a win.",
        84,
        (38, 27, 35),
        None,
    ),
    (
        "Central bank holds rates steady, signals two cuts next year",
        "Policymakers pointed to cooling inflation but warned that wage growth remains "
        "stubborn in services.",
        61,
        (33, 41, 26),
        None,
    ),
    (
        "City council approves housing plan that ends single-family zoning",
        "Supporters say the change will lower rents; opponents worry about parking, schools "
        "and the character of older neighborhoods.",
        23,
        (64, 25, 11),
        "right",
    ),
    (
        "Wildfire near the state line forces 12,000 to evacuate",
        "Crews contained a third of the blaze overnight as winds eased; officials said it "
        "could take a week to reopen the highway.",
        47,
        (31, 40, 29),
        None,
    ),
    (
        "Study links ultra-processed food to higher risk of heart disease",
        "Researchers followed 110,000 adults for a decade; industry groups questioned how "
        "the categories were drawn.",
        35,
        (40, 42, 18),
        None,
    ),
    (
        "Governor signs law requiring ID for mail-in ballots",
        "Election officials have four months to update forms; civil rights groups said they "
        "would challenge the law in court.",
        52,
        (12, 30, 58),
        "left",
    ),
    (
        "Tech giants agree to label AI-generated political ads",
        "The voluntary pact covers video and audio; critics say it lacks penalties for "
        "companies that fall short.",
        29,
        (36, 38, 26),
        None,
    ),
    (
        "Port strike ends with six-year contract and automation limits",
        "Shipping lines expect backlogs to clear within three weeks as crews return to the "
        "terminals.",
        40,
        (30, 45, 25),
        None,
    ),
    (
        "Supreme Court agrees to hear case on social media age limits",
        "The justices will decide whether states can require parental consent for users "
        "under 16; arguments are set for the spring.",
        57,
        (34, 33, 33),
        None,
    ),
    (
        "Record number of students apply for federal aid after form fix",
        "Applications rose 18% over last year after a simplified form that had been plagued "
        "by glitches was repaired.",
        18,
        (44, 39, 17),
        None,
    ),
]


def _common() -> dict[str, Any]:
    context = common_context(current_app._get_current_object())  # type: ignore[attr-defined]
    # A preview with an empty footer line would hide how the address reads.
    context["postal_address"] = context["postal_address"] or "1 Sample Street, Springfield"
    return context


SAMPLE_OUTLETS = {
    Side.LEFT: ("Lakeside Tribune", Bias.LEAN_LEFT, "{title}, a win for families"),
    Side.CENTER: ("National Wire Service", Bias.CENTER, "What to know: {title}"),
    Side.RIGHT: ("Frontier Journal", Bias.LEAN_RIGHT, "{title}; critics cite the cost"),
}


def _sample_articles(title: str, blindspot: str | None) -> list[Article]:
    articles = []
    for side, (name, bias, headline) in SAMPLE_OUTLETS.items():
        if side.value == blindspot:
            continue  # a blindspot's missing side shows as "No ... coverage"
        outlet = Outlet(name=name, slug=side.value, bias=bias, factuality=Factuality.HIGH)
        articles.append(Article(headline=headline.format(title=title), outlet=outlet))
    return articles


def sample_stories() -> list[dict[str, Any]]:
    """The sample stories as the edition template gets them (the real `story_context`),
    linking to where a story page would be."""
    base = current_app.config["BASE_URL"]
    stories = []
    for n, (title, overview, sources, (left, center, right), blindspot) in enumerate(
        SAMPLE_STORIES, start=1
    ):
        story = Story(id=n, title=title, overview=overview, summary=None)
        story.articles = _sample_articles(title, blindspot)
        # Counts stand in for outlets: only the shares and the source count are shown.
        cov = Coverage(
            left=left,
            center=center,
            right=right,
            left_pct=left,
            center_pct=center,
            right_pct=right,
            source_count=sources,
            blindspot=Side(blindspot) if blindspot else None,
        )
        stories.append(story_context(story, cov, f"{base}/stories/sample-story-{n}", n))
    return stories


def _edition(plan: str, *, billing: bool = True) -> dict[str, Any]:
    cfg = current_app.config
    base = cfg["BASE_URL"]
    day = date.today() + timedelta(days=1)
    stories = sample_stories()
    reset = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    web = plan == "web"
    return {
        **_common(),
        "subject": subject_for([s["title"] for s in stories]),
        "preheader": f"How the left, center and right framed {len(stories)} stories. "
        f"Also: {stories[1]['title']}",
        "date_label": f"{day:%A, %B} {day.day}",
        "reading_minutes": 5,
        "stories": stories,
        "blindspots": [s for s in stories if s["blindspot"]],
        "plan": plan,
        "billing": billing,
        "free_left": "" if web else "7",
        "free_per_month": cfg["FREE_STORIES_PER_MONTH"],
        "free_reset_label": f"{reset:%B} {reset.day}",
        "trial_days_left": "" if web else "5",
        "trial_days": cfg["TRIAL_DAYS"],
        "account_url": base + "/account",
        "signup_url": base + "/",
        "web_url": None if web else f"{base}/editions/{day.isoformat()}",
        "archive_url": base + "/editions",
        "unsubscribe_url": None if web else base + "/unsubscribe/sample-token",
    }


def _known(name: str) -> dict[str, dict[str, Any]] | None:
    cfg = current_app.config
    base = cfg["BASE_URL"]
    if name == "edition":
        found = {plan: _edition(plan) for plan in ("free", "trial", "paid")}
        found["free, billing off"] = _edition("free", billing=False)
        found["web version"] = _edition("web")
        return found
    if name == "welcome":
        ctx = {
            **_common(),
            "first_edition_label": "Thursday, December 3 at 06:00 (America/New_York)",
            "delivery_label": "06:00 (America/New_York)",
            "free_per_month": cfg["FREE_STORIES_PER_MONTH"],
            "trial_days": cfg["TRIAL_DAYS"],
            "blindspot_share": 20,
            "blindspot_sources": 3,
            "account_url": f"{base}/account",
            "archive_url": f"{base}/editions",
        }
        return {
            "billing on": {**ctx, "billing": True},
            "billing off": {**ctx, "billing": False},
        }
    if name == "confirm":
        return {
            "default": {
                **_common(),
                "confirm_url": f"{base}/confirm/sample-token",
                "valid_hours": cfg["CONFIRM_TOKEN_MAX_AGE"] // 3600,
            }
        }
    if name == "erase":
        return {
            "default": {
                **_common(),
                "erase_url": f"{base}/account/delete/sample-token",
                "valid_hours": cfg["ERASE_TOKEN_MAX_AGE"] // 3600,
            }
        }
    if name == "signin":
        ctx = {
            **_common(),
            "signin_url": f"{base}/signin/sample-token",
            "valid_minutes": cfg["SIGNIN_TOKEN_MAX_AGE"] // 60,
        }
        return {
            "signin": {**ctx, "reason": "signin"},
            "already subscribed": {**ctx, "reason": "already_subscribed"},
        }
    if name == "trial_will_end":
        ctx = {
            **_common(),
            "trial_end": (date.today() + timedelta(days=3)).strftime("%B %-d"),
            "price": cfg.get("PRICE_LABEL", "$5/month"),
            "account_url": f"{base}/account",
        }
        return {"renews": {**ctx, "renews": True}, "cancelled": {**ctx, "renews": False}}
    if name == "payment_failed":
        ctx = {
            **_common(),
            "fix_url": f"{base}/account",
            "account_url": f"{base}/account",
            "grace_days": int(cfg.get("BILLING_GRACE_DAYS", 3)),
        }
        return {"with amount": {**ctx, "amount": "5.00 USD"}, "no amount": {**ctx, "amount": None}}
    return None


def default_variables(name: str) -> set[str]:
    """The variables the default files of an email use (its layout's included)."""
    sources = file_sources(name)
    env = environment_for(name, sources)
    found: set[str] = set()
    for text in (
        sources.subject,
        sources.mjml,
        sources.text,
        sources.layout_mjml,
        sources.layout_text,
    ):
        found |= meta.find_undeclared_variables(env.parse(text))
    return found


def variants(name: str) -> dict[str, dict[str, Any]]:
    """Sample contexts by variant label, for an email (not the layout)."""
    known = _known(name)
    if known is not None:
        return known
    # An email this module does not know yet: a readable placeholder per variable.
    context = {var: f"[{var}]" for var in sorted(default_variables(name))}
    return {"default": {**context, **_common()}}


def every_context() -> dict[str, dict[str, dict[str, Any]]]:
    return {name: variants(name) for name in template_names()}


def known_variables(name: str) -> set[str]:
    """What a template of `name` may use: for an email, any key of any of its variants;
    for the layout, only what every email gives it."""
    if name == LAYOUT:
        sets = [known_variables(n) for n in template_names()]
        return set.intersection(*sets) if sets else set()
    keys: set[str] = set()
    for ctx in variants(name).values():
        keys |= set(ctx)
    return keys
