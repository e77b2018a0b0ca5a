"""Filing new articles into stories: online, incremental clustering.

For one batch of new articles (`file_articles`):
1. The neighbourhood: every story with an article within the window (48 h) of the batch,
   with all its articles.
2. TF-IDF (English stop words, sublinear tf) over each article's headline and the start of
   its lede, fitted on the neighbourhood and the batch together.
3. In time order, each new article is first checked for a wire copy: a MinHash LSH match
   over word shingles. A copy from the same outlet is a duplicate (not stored); a copy from
   another outlet joins the copied article's story, as that outlet's coverage. Otherwise
   the article joins the open story whose centroid (the sum of its articles' vectors) is
   most similar by cosine, when that passes the threshold; a story that already has an
   article from the same outlet counts a little less (an outlet rarely reports one event
   twice). Else it opens a new candidate story.
4. Merge: a story this batch touched merges with another whose centroid has converged with
   its own. Only candidate stories clustering made, untouched by staff and in no edition,
   are ever merged away, so an article never leaves a story an edition holds.
5. Each touched story's title and overview come from its most central article from a
   center outlet, else from its highest-factuality outlet (until staff edit them); with
   `STORIES_AUTO_PUBLISH_OUTLETS` set, a candidate with that many outlets is published.

Everything is ordered by time, then by URL or id, so the same input files the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from newsletter.editions.models import EditionStory
from newsletter.stories.importing import slugify, unique_slug
from newsletter.stories.models import (
    OVERVIEW_MAX,
    TITLE_MAX,
    Article,
    Bias,
    Factuality,
    Outlet,
    Story,
    StoryStatus,
)

# A new article joins a story when the cosine to its centroid reaches this.
JOIN_THRESHOLD = 0.08
# Two stories merge when their centroids reach this.
MERGE_THRESHOLD = 0.45
# The factor on a story's similarity when it already has an article of the same outlet.
SAME_OUTLET_FACTOR = 0.85
# Between a story's centroid cosine (0) and its articles' mean similarity (1).
LINKAGE = 0.0
# A story's similarity halves for every this many hours between it and the article.
HALF_LIFE_HOURS = 3.0
# Estimated Jaccard similarity of word shingles above which two texts are one wire copy.
NEAR_DUPLICATE = 0.8
LEDE_CHARS = 300
NUM_PERM = 64
SHINGLE_WORDS = 3
MIN_SHINGLES = 4
EXTERNAL_ID_PREFIX = "cluster-"
# Stored signatures are only comparable under the scheme that made them.
_SCHEME = "affine32"

_WORD = re.compile(r"\w+")
_FACTUALITY_RANK = {
    Factuality.VERY_HIGH: 6,
    Factuality.HIGH: 5,
    Factuality.MOSTLY_FACTUAL: 4,
    Factuality.MIXED: 3,
    Factuality.LOW: 2,
    Factuality.VERY_LOW: 1,
    Factuality.UNRATED: 0,
}


@dataclass(frozen=True)
class ClusterSettings:
    window: timedelta = timedelta(hours=48)
    join_threshold: float = JOIN_THRESHOLD
    merge_threshold: float = MERGE_THRESHOLD
    same_outlet_factor: float = SAME_OUTLET_FACTOR
    near_duplicate: float = NEAR_DUPLICATE
    linkage: float = LINKAGE
    half_life_hours: float = HALF_LIFE_HOURS
    auto_publish_outlets: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClusterSettings:
        return cls(
            window=timedelta(hours=int(config.get("STORIES_CLUSTER_WINDOW_HOURS", 48))),
            auto_publish_outlets=config.get("STORIES_AUTO_PUBLISH_OUTLETS") or None,
        )


@dataclass
class Filed:
    stored: list[Article] = field(default_factory=list)
    duplicates: int = 0
    clustered: int = 0  # stored articles that joined a story rather than opening one
    new_stories: int = 0


@dataclass
class _Doc:
    outlet_id: int
    at: datetime
    headline: str
    lede: str | None
    fingerprint: bytes | None
    article: Article | None = None  # the new ones
    group: int = -1  # index into the groups; -1 while unfiled or for a duplicate


@dataclass
class _Group:
    story_id: int | None
    status: StoryStatus = StoryStatus.CANDIDATE
    movable: bool = True  # may be merged away
    retitle: bool = True
    members: list[int] = field(default_factory=list)
    outlets: set[int] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    norm2: float = 0.0
    touched: bool = False
    merged_into: int | None = None

    def add(self, index: int, doc: _Doc) -> None:
        self.members.append(index)
        self.outlets.add(doc.outlet_id)
        self.first = doc.at if self.first is None else min(self.first, doc.at)
        self.last = doc.at if self.last is None else max(self.last, doc.at)


def new_external_id(seed: str) -> str:
    """The `external_id` of a story clustering (or a split) opens: from its first article,
    so the same input makes the same story."""
    return EXTERNAL_ID_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:32]


def article_text(headline: str, lede: str | None) -> str:
    """What clustering compares: the headline and the start of the lede."""
    return f"{headline} {(lede or '')[:LEDE_CHARS]}".strip()


def fingerprints(texts: Sequence[tuple[str, str | None]]) -> list[bytes | None]:
    """The MinHash signature of each (headline, lede)'s word shingles; None for a text
    too short to tell a copy from a coincidence."""
    shingled = [_shingles(f"{headline} {lede or ''}") for headline, lede in texts]
    long_enough = [s for s in shingled if len(s) >= MIN_SHINGLES]
    made = iter(MinHash.bulk(long_enough, num_perm=NUM_PERM, seed=1, scheme=_SCHEME))
    return [
        next(made).hashvalues.astype("<u4").tobytes() if len(s) >= MIN_SHINGLES else None
        for s in shingled
    ]


@lru_cache
def _lsh_params(threshold: float) -> tuple[int, int]:
    # Choosing bands and rows integrates the error curves: worth doing once.
    probe = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return probe.b, probe.r


def _shingles(text: str) -> list[bytes]:
    words = _WORD.findall(text.lower())
    return sorted(
        {
            " ".join(words[i : i + SHINGLE_WORDS]).encode()
            for i in range(len(words) - SHINGLE_WORDS + 1)
        }
    )


def _minhash(signature: bytes) -> LeanMinHash:
    return LeanMinHash(seed=1, hashvalues=np.frombuffer(signature, dtype="<u4"), scheme=_SCHEME)


def file_articles(
    session: Session, fresh: Sequence[Article], settings: ClusterSettings, now: datetime
) -> Filed:
    """File the new `fresh` articles (not yet added to the session) into stories.

    Each needs `published_at` (its time for clustering), `outlet_id`, `headline`, `lede`,
    `canonical_url` and `fingerprint`. Returns the ones stored and the counts.
    """
    filed = Filed()
    if not fresh:
        return filed
    fresh = sorted(fresh, key=lambda a: (a.published_at, a.canonical_url or a.url))
    times = [a.published_at for a in fresh if a.published_at is not None]
    start, end = min(times) - settings.window, max(times) + settings.window

    docs, groups, by_story = _neighbourhood(session, start, end)
    first_fresh = len(docs)
    for article in fresh:
        assert article.published_at is not None
        docs.append(
            _Doc(
                article.outlet_id,
                article.published_at,
                article.headline,
                article.lede,
                article.fingerprint,
                article,
            )
        )

    vectors = _vectors([article_text(d.headline, d.lede) for d in docs])
    _initial_norms(groups, docs, vectors)

    lsh = MinHashLSH(num_perm=NUM_PERM, params=_lsh_params(settings.near_duplicate))
    signatures: dict[int, LeanMinHash] = {}
    for index, doc in enumerate(docs[:first_fresh]):
        if doc.fingerprint is not None:
            signatures[index] = _minhash(doc.fingerprint)
            lsh.insert(index, signatures[index], check_duplication=False)

    similar = sparse.csr_matrix(vectors[first_fresh:] @ vectors.T)
    labels = np.array([d.group for d in docs], dtype=np.int64)
    for offset, doc in enumerate(docs[first_fresh:]):
        index = first_fresh + offset
        copy_of = _wire_copy(doc, lsh, signatures, docs, settings, index)
        if copy_of is not None and docs[copy_of].outlet_id == doc.outlet_id:
            filed.duplicates += 1
            continue
        row = similar.getrow(offset)
        if copy_of is not None:
            target = docs[copy_of].group
            dot = _dot(row, labels, target)
        else:
            target, dot = _best_group(row, labels, groups, doc, settings)
        if target < 0:
            groups.append(_Group(story_id=None))
            target, dot = len(groups) - 1, 0.0
        group = groups[target]
        group.norm2 += 2 * dot + 1
        group.add(index, doc)
        group.touched = True
        doc.group = labels[index] = target
        if index in signatures:
            lsh.insert(index, signatures[index], check_duplication=False)

    _merge(groups, docs, vectors, settings)
    outlets = _outlets(session, {d.outlet_id for d in docs})
    _write(session, groups, docs, vectors, by_story, outlets, settings, now, filed)
    return filed


def _vectors(texts: list[str]) -> sparse.csr_matrix:
    """TF-IDF rows, L2-normalised; all zeros when no text has a word that counts (only
    stop words, punctuation or nothing): such articles then join stories only as copies."""
    try:
        found = TfidfVectorizer(
            stop_words="english", sublinear_tf=True, strip_accents="unicode", dtype=np.float32
        ).fit_transform(texts)
    except ValueError:  # an empty vocabulary
        return sparse.csr_matrix((len(texts), 1), dtype=np.float32)
    return sparse.csr_matrix(found)


def _dot(row: sparse.csr_matrix, labels: np.ndarray, target: int) -> float:
    cols = row.indices
    mask = labels[cols] == target
    return float(row.data[mask].sum())


def _wire_copy(
    doc: _Doc,
    lsh: MinHashLSH,
    signatures: dict[int, LeanMinHash],
    docs: list[_Doc],
    settings: ClusterSettings,
    index: int,
) -> int | None:
    if doc.fingerprint is None:
        return None
    mine = _minhash(doc.fingerprint)
    best: tuple[float, int] | None = None
    for other in lsh.query(mine):
        if docs[other].group < 0 or abs(docs[other].at - doc.at) > settings.window:
            continue
        score = mine.jaccard(signatures[other])
        if score >= settings.near_duplicate and (best is None or (-score, other) < best):
            best = (-score, other)
    signatures[index] = mine
    return None if best is None else best[1]


def _best_group(
    row: sparse.csr_matrix,
    labels: np.ndarray,
    groups: list[_Group],
    doc: _Doc,
    settings: ClusterSettings,
) -> tuple[int, float]:
    cols = row.indices
    labs = labels[cols]
    mask = labs >= 0
    if not mask.any():
        return -1, 0.0
    dots = np.bincount(labs[mask], weights=row.data[mask], minlength=len(groups))
    best, best_score, best_dot = -1, settings.join_threshold, 0.0
    for g in np.flatnonzero(dots > 0):
        group = groups[g]
        if group.merged_into is not None or not _open(group, doc.at, settings.window):
            continue
        size = len(group.members)
        score = dots[g] / (np.sqrt(group.norm2) ** (1 - settings.linkage) * size**settings.linkage)
        assert group.first is not None and group.last is not None
        gap = max(doc.at - group.last, group.first - doc.at, timedelta(0))
        score *= 0.5 ** (gap.total_seconds() / 3600 / settings.half_life_hours)
        if doc.outlet_id in group.outlets:
            score *= settings.same_outlet_factor
        if score >= best_score and (score > best_score or best < 0):
            best, best_score, best_dot = int(g), float(score), float(dots[g])
    return best, best_dot


def _open(group: _Group, at: datetime, window: timedelta) -> bool:
    assert group.first is not None and group.last is not None
    return group.last >= at - window and group.first <= at + window


def _membership(groups: list[_Group], n_docs: int) -> sparse.csr_matrix:
    rows, cols = [], []
    for g, group in enumerate(groups):
        rows += [g] * len(group.members)
        cols += group.members
    data = np.ones(len(rows), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(groups), n_docs))


def _initial_norms(groups: list[_Group], docs: list[_Doc], vectors: sparse.csr_matrix) -> None:
    if not groups:
        return
    sums = _membership(groups, len(docs)) @ vectors
    norms = np.asarray(sums.multiply(sums).sum(axis=1)).ravel()
    for group, norm2 in zip(groups, norms, strict=True):
        group.norm2 = float(norm2)


def _merge(
    groups: list[_Group], docs: list[_Doc], vectors: sparse.csr_matrix, settings: ClusterSettings
) -> None:
    touched = [g for g, group in enumerate(groups) if group.touched]
    if not touched or len(groups) < 2:
        return
    sums = sparse.csr_matrix(_membership(groups, len(docs)) @ vectors)
    norms = np.sqrt(np.asarray(sums.multiply(sums).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    centroids = sparse.csr_matrix(sparse.diags(1 / norms) @ sums)
    sims = sparse.coo_matrix(centroids[touched] @ centroids.T)
    pairs = sorted(
        (-float(s), min(touched[r], c), max(touched[r], c))
        for r, c, s in zip(sims.row, sims.col, sims.data, strict=True)
        if s >= settings.merge_threshold and touched[r] != c
    )
    for _, a, b in dict.fromkeys(pairs):
        a, b = _root(groups, a), _root(groups, b)
        if a == b:
            continue
        ga, gb = groups[a], groups[b]
        assert ga.first and ga.last and gb.first and gb.last
        if ga.first > gb.last + settings.window or gb.first > ga.last + settings.window:
            continue
        survivor, loser = _survivor(groups, a, b)
        if survivor is None or loser is None:
            continue
        keep, gone = groups[survivor], groups[loser]
        for index in gone.members:
            keep.add(index, docs[index])
            docs[index].group = survivor
        gone.members = []
        gone.merged_into = survivor
        keep.touched = True


def _root(groups: list[_Group], g: int) -> int:
    while groups[g].merged_into is not None:
        g = groups[g].merged_into  # type: ignore[assignment]
    return g


def _survivor(groups: list[_Group], a: int, b: int) -> tuple[int | None, int | None]:
    """Which of two converged stories stays: the older one, unless only the other may
    be merged away; never a hidden one."""
    ga, gb = groups[a], groups[b]
    if ga.status == StoryStatus.HIDDEN or gb.status == StoryStatus.HIDDEN:
        return None, None
    if ga.movable and gb.movable:
        return (a, b) if _age_key(ga, a) <= _age_key(gb, b) else (b, a)
    if gb.movable:
        return a, b
    if ga.movable:
        return b, a
    return None, None


def _age_key(group: _Group, g: int) -> tuple[int, int]:
    # Stored stories before the ones this batch opens, each in creation order.
    return (0, group.story_id) if group.story_id is not None else (1, g)


def _neighbourhood(
    session: Session, start: datetime, end: datetime
) -> tuple[list[_Doc], list[_Group], dict[int, int]]:
    """The stories with an article published between `start` and `end`, as groups, and
    all their articles, as docs."""
    near = (
        select(Article.story_id)
        .where(Article.published_at >= start, Article.published_at <= end)
        .distinct()
        .scalar_subquery()
    )
    stories = session.execute(
        select(Story.id, Story.status, Story.external_id, Story.edited_at)
        .where(Story.id.in_(near))
        .order_by(Story.id)
    ).all()
    in_editions = set(
        session.scalars(select(EditionStory.story_id).where(EditionStory.story_id.in_(near)))
    )
    groups: list[_Group] = []
    by_story: dict[int, int] = {}
    for story_id, status, external_id, edited_at in stories:
        own = external_id.startswith(EXTERNAL_ID_PREFIX)
        free = story_id not in in_editions and edited_at is None
        by_story[story_id] = len(groups)
        groups.append(
            _Group(
                story_id=story_id,
                status=status,
                movable=own and free and status == StoryStatus.CANDIDATE,
                retitle=own and free,
            )
        )
    docs: list[_Doc] = []
    rows = session.execute(
        select(
            Article.story_id,
            Article.outlet_id,
            Article.published_at,
            Article.first_seen_at,
            Article.headline,
            Article.lede,
            Article.fingerprint,
        )
        .where(Article.story_id.in_(near))
        .order_by(Article.id)
    ).all()
    for story_id, outlet_id, published_at, seen_at, headline, lede, signature in rows:
        doc = _Doc(outlet_id, published_at or seen_at, headline, lede, signature)
        doc.group = by_story[story_id]
        groups[doc.group].add(len(docs), doc)
        docs.append(doc)
    return docs, groups, by_story


def _outlets(session: Session, ids: set[int]) -> dict[int, tuple[Bias, Factuality]]:
    rows = session.execute(
        select(Outlet.id, Outlet.bias, Outlet.factuality).where(Outlet.id.in_(ids))
    )
    return {oid: (bias, fact) for oid, bias, fact in rows}


def _lead_article(
    group: _Group,
    docs: list[_Doc],
    vectors: sparse.csr_matrix,
    outlets: dict[int, tuple[Bias, Factuality]],
) -> int:
    """The member a story is titled after: a center outlet's article first (else the
    highest factuality), the one nearest the story's centroid among those."""
    members = group.members
    centroid = np.asarray(vectors[members].sum(axis=0)).ravel()
    central = vectors[members] @ centroid

    def key(i: int) -> tuple[int, int, float, int]:
        bias, fact = outlets.get(docs[members[i]].outlet_id, (Bias.UNRATED, Factuality.UNRATED))
        return (bias != Bias.CENTER, -_FACTUALITY_RANK[fact], -float(central[i]), members[i])

    return members[min(range(len(members)), key=key)]


def _write(
    session: Session,
    groups: list[_Group],
    docs: list[_Doc],
    vectors: sparse.csr_matrix,
    by_story: dict[int, int],
    outlets: dict[int, tuple[Bias, Factuality]],
    settings: ClusterSettings,
    now: datetime,
    filed: Filed,
) -> None:
    stories: dict[int, Story] = {}
    slugs: set[str] = set()
    wanted = [
        group.story_id
        for group in groups
        if group.merged_into is None and group.touched and group.story_id is not None
    ]
    loaded = {
        story.id: story
        for i in range(0, len(wanted), 500)
        for story in session.scalars(select(Story).where(Story.id.in_(wanted[i : i + 500])))
    }
    # New stories wait in the session while slugs are looked up: one flush, not one each.
    with session.no_autoflush:
        for g, group in enumerate(groups):
            if group.merged_into is not None or not group.touched:
                continue
            if group.story_id is not None:
                stories[g] = loaded[group.story_id]
                continue
            opener = docs[group.members[0]].article
            assert opener is not None and opener.canonical_url is not None
            slug = unique_slug(session, slugify(opener.headline), slugs)
            slugs.add(slug)
            story = Story(
                external_id=new_external_id(opener.canonical_url),
                slug=slug,
                title=opener.headline[:TITLE_MAX],
                overview="",
                status=StoryStatus.CANDIDATE,
                published_at=docs[group.members[0]].at,
                created_at=now,
                updated_at=now,
            )
            session.add(story)
            filed.new_stories += 1
            stories[g] = story

        for g, story in stories.items():
            _describe(story, groups[g], docs, vectors, outlets, settings, now)
    session.flush()

    gone = {
        group.story_id: stories[_root(groups, g)].id
        for g, group in enumerate(groups)
        if group.merged_into is not None and group.story_id is not None
    }
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Story) and obj.id in gone:
            session.expunge(obj)
    for story_id, survivor_id in gone.items():
        session.execute(
            update(Article).where(Article.story_id == story_id).values(story_id=survivor_id)
        )
        session.execute(delete(Story).where(Story.id == story_id))
    # By id, not through `Story.articles`: that would load every story's articles.
    for doc in docs:
        if doc.article is not None and doc.group >= 0:
            doc.article.story_id = stories[_root(groups, doc.group)].id
            filed.stored.append(doc.article)
    session.add_all(filed.stored)
    filed.clustered = len(filed.stored) - filed.new_stories
    session.flush()
    for story in stories.values():
        session.expire(story, ["articles"])


def _describe(
    story: Story,
    group: _Group,
    docs: list[_Doc],
    vectors: sparse.csr_matrix,
    outlets: dict[int, tuple[Bias, Factuality]],
    settings: ClusterSettings,
    now: datetime,
) -> None:
    """A touched story's time, title and overview (unless staff own them) and status."""
    latest = max(docs[i].at for i in group.members)
    if latest > story.published_at:
        story.published_at = latest
    if group.retitle or group.story_id is None:
        lead = docs[_lead_article(group, docs, vectors, outlets)]
        if story.title != lead.headline[:TITLE_MAX]:
            story.title = lead.headline[:TITLE_MAX]
        overview = (lead.lede or lead.headline)[:OVERVIEW_MAX]
        if story.overview != overview:
            story.overview = overview
    if (
        settings.auto_publish_outlets
        and story.status == StoryStatus.CANDIDATE
        and len(group.outlets) >= settings.auto_publish_outlets
    ):
        story.status = StoryStatus.PUBLISHED
    story.updated_at = now
