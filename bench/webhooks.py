"""Stripe webhooks: 2,000 signed events (20% of them redeliveries) posted to the app.

    .venv/bin/python bench/webhooks.py [--events 2000] [--duplicates 0.2] [--rounds 3]
        [--late S] [--database-url URL] [--wipe] [--workers N] [--threads N]
        [--connections 32]

1. Setup (not timed): a scratch database (PostgreSQL by default, the test_h5 database on
   this machine, whose schema is dropped and made again; `--database-url sqlite:///…`
   for a SQLite file), one confirmed reader per subscription with the Stripe customer
   checkout left stored, and the fake Stripe API (tests/billing/fake_stripe.py) in its own
   process, holding those subscriptions: the API every handler re-reads from over HTTP.
2. Each round's posts, about subscriptions of its own: per subscription,
   checkout.session.completed, customer.subscription.created, invoice.paid and
   invoice.payment_succeeded, the subscriptions interleaved; then redeliveries of earlier
   events put in at random later places, until they are `--duplicates` of all posts.
   Each post is built when it is sent (`Poster`), as Stripe sends live events: the event
   was created (`created`, whole seconds) then, a redelivery carries its original's
   `created`, and the signature (`t=…,v1=…`, HMAC-SHA256) is made at that moment. So no
   stored read can cover an event (the probe in `billing.webhooks`): each one re-reads
   its subscription from Stripe. With `--late S` the events were created S seconds
   before their first post, as when Stripe retries what queued while the endpoint was
   down: then each subscription's first event re-reads it, and that read covers its
   later ones. The bench prints how many events re-read Stripe.
3. Both servers run gunicorn with production's settings (gunicorn.conf.py: gthread
   workers, 2 per core, 4 threads each; `--workers`/`--threads` override) on loopback,
   and get the same posts from the same client: 32 threads, one short connection per
   post, raw sockets. `--rounds` rounds of the baseline, then the app, each with that
   round's posts: interleaved, a burst of the shared machine's other work lands on both.
   - Baseline: a Flask app whose only route verifies the signature with the function the
     app uses (webhooks.signature.verify_event).
   - The app: the real `POST /webhooks/stripe` (`newsletter.app:create_app()`).
   A figure is all rounds' posts over all their time. Also printed: CPU per post of the
   servers, their PostgreSQL backends, the fake Stripe and the client (on 2 shared
   cores, CPU per post is steadier than posts/s).
4. Checks: each event id was processed by exactly one post and every other post of it was
   answered "duplicate" (with concurrent posts, a redelivery may overtake its original);
   the events table holds each id once; every subscription is stored as Stripe has it.
   Then all the posts go to the app once more, and every one must be a duplicate; the
   rate of that pass is printed as context (what recording an event id costs alone).

Target: ratio >= 0.25 with one code path, every duplicate ignored. Prints the ratio last;
exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import runpy
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The project first (its `webhooks` package, `tests.billing.fake_stripe`), then bench/
# (`common`): also when gunicorn imports this file as `bench.webhooks` for the baseline.
sys.path[:0] = [str(ROOT), str(BENCH)]

from common import (  # noqa: E402
    BenchError,
    CpuUse,
    postgres_pids,
    process_tree,
    say,
    scratch_database,
)
from flask import Flask, jsonify, request  # noqa: E402
from sqlalchemy import create_engine, func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from newsletter.billing.gateway import PRICE_LOOKUP_KEY  # noqa: E402
from newsletter.billing.models import (  # noqa: E402
    BillingCustomer,
    BillingSubscription,
    StripeEvent,
)
from newsletter.readers.models import Reader, ReaderStatus  # noqa: E402
from tests.billing.fake_stripe import FakeStripe, signed  # noqa: E402
from webhooks.signature import BadWebhook, verify_event  # noqa: E402

RATIO_TARGET = 0.25
SECRET = "whsec_bench_secret"  # noqa: S105 (a test secret)
PRICE_ID = "price_bench_monthly"
TYPES_PER_SUBSCRIPTION = (
    "checkout.session.completed",
    "customer.subscription.created",
    "invoice.paid",
    "invoice.payment_succeeded",
)


# --- setup -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stripe_state(count: int) -> tuple[FakeStripe, list[list[dict[str, Any]]]]:
    """Customers and subscriptions as Stripe holds them, and each one's events in order."""
    fake = FakeStripe()
    fake.add_price(PRICE_ID, lookup_key=PRICE_LOOKUP_KEY)
    events_by_sub: list[list[dict[str, Any]]] = []
    for n in range(count):
        customer = fake.add_customer(f"reader{n}@bench.example", {"reader_id": str(n + 1)})
        sub = fake.add_subscription(
            customer["id"], PRICE_ID, trial_days=7 if n % 2 else None, metadata={}
        )
        invoice = fake.add_invoice(sub["id"], status="paid", amount=0 if n % 2 else 500)
        checkout = {
            "id": f"cs_bench_{n}",
            "object": "checkout.session",
            "mode": "subscription",
            "status": "complete",
            "customer": customer["id"],
            "subscription": sub["id"],
            "client_reference_id": str(n + 1),
        }
        objects = {
            "checkout.session.completed": checkout,
            "customer.subscription.created": sub,
            "invoice.paid": invoice,
            "invoice.payment_succeeded": invoice,
        }
        events_by_sub.append([fake.event(t, objects[t]) for t in TYPES_PER_SUBSCRIPTION])
    return fake, events_by_sub


def interleave(events_by_sub: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The subscriptions' events interleaved, keeping each one's own order."""
    return [events[step] for step in range(len(TYPES_PER_SUBSCRIPTION)) for events in events_by_sub]


def with_redeliveries(
    stream: list[dict[str, Any]], total: int, rng: random.Random
) -> list[dict[str, Any]]:
    """`total` posts: the unique events, plus redeliveries each placed after its original."""
    posts = list(stream)
    while len(posts) < total:
        original = rng.randrange(len(stream))
        position = posts.index(stream[original])
        posts.insert(rng.randrange(position + 1, len(posts) + 1), stream[original])
    return posts


def start_fake_stripe(fake: FakeStripe, tmp: str) -> tuple[subprocess.Popen[str], str]:
    state = Path(tmp) / "stripe-state.json"
    stores = ("customers", "prices", "subscriptions", "invoices")
    state.write_text(json.dumps({name: getattr(fake, name) for name in stores}))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.billing.fake_stripe", str(port), str(state)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        raise BenchError(f"the fake Stripe API did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}"


def seed_readers(url: str, fake: FakeStripe) -> None:
    engine = create_engine(url)
    customers = list(fake.customers.values())
    with engine.begin() as conn:
        conn.execute(
            insert(Reader),
            [
                {
                    "id": n + 1,
                    "email": c["email"],
                    "email_key": c["email"],
                    "status": ReaderStatus.CONFIRMED,
                }
                for n, c in enumerate(customers)
            ],
        )
        conn.execute(
            insert(BillingCustomer),
            [
                {"reader_id": n + 1, "stripe_customer_id": c["id"], "email": c["email"]}
                for n, c in enumerate(customers)
            ],
        )
        if engine.dialect.name == "postgresql":
            conn.execute(select(func.setval("readers_id_seq", len(customers))))
    engine.dispose()


# --- the servers and the client ----------------------------------------------------------

DEFAULT_DATABASE_URL = "postgresql+psycopg://root@127.0.0.1:5432/test_h5"
PRODUCTION = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
WORKERS: int = PRODUCTION["workers"]
THREADS: int = PRODUCTION["threads"]
CONNECTIONS = 32


def baseline_app() -> Flask:
    """An endpoint that only verifies the signature, as the app's first step does."""
    app = Flask("baseline")

    @app.post("/webhooks/stripe")
    def stripe_webhook():  # type: ignore[no-untyped-def]
        try:
            event = verify_event(
                request.get_data(cache=False), request.headers.get("Stripe-Signature"), [SECRET]
            )
        except BadWebhook as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(received=True, id=event["id"])

    return app


@contextmanager
def gunicorn(
    name: str, app_spec: str, env: dict[str, str], log: Path, workers: int, threads: int
) -> Iterator[tuple[int, int]]:
    """gunicorn on a loopback port, with the same flags for both servers (flags given
    here override gunicorn.conf.py, which gunicorn also reads); yields (port, pid)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn",
        "-w", str(workers),
        "-k", "gthread" if threads > 1 else "sync",
        "--threads", str(threads),
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        "--no-control-socket",
        app_spec,
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise BenchError(
                            f"the {name} server did not start:\n{log.read_text()[-3000:]}"
                        ) from None
                    time.sleep(0.2)
            yield port, proc.pid
        finally:
            proc.terminate()
            proc.wait(30)


class Poster:
    """Builds each post the moment it is sent, as Stripe does: the event was created
    (`created`, whole seconds, as Stripe stamps it) `late` seconds before its first post,
    and a redelivery carries its original's `created`; the signature is made now."""

    def __init__(self, late: int = 0) -> None:
        self.late = late
        self.created: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> bytes:
        with self.lock:
            created = self.created.setdefault(event["id"], int(time.time()) - self.late)
        payload, header = signed({**event, "created": created}, SECRET)
        body = payload.encode()
        head = (
            "POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Stripe-Signature: {header}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body


def post_all(
    port: int, posts: list[dict[str, Any]], poster: Poster, connections: int
) -> tuple[float, list[tuple[int, bytes]]]:
    """Send every post over `connections` threads; thread k sends k, k+n, k+2n, …"""
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(posts)
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            for i in range(k, len(posts), connections):
                request = poster(posts[i])
                with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                    sock.sendall(request)
                    chunks = []
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
                raw = b"".join(chunks)
                head, _, body = raw.partition(b"\r\n\r\n")
                answers[i] = (int(head.split(b" ", 2)[1]), body)
        except BaseException as exc:  # reported below, after the other threads finish
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    if errors:
        raise BenchError(f"client error: {errors[0]!r}")
    for status, body in answers:
        if status != 200:
            raise BenchError(f"HTTP {status}: {body[:300]!r}")
    return took, answers


def check(
    url: str, fake: FakeStripe, posts: list[dict[str, Any]], answers: list[tuple[int, bytes]]
) -> int:
    """Each id processed once, every other post of it a duplicate; Stripe's state stored."""
    processed: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    for event, (_, body) in zip(posts, answers, strict=True):
        outcome = json.loads(body)["outcome"]
        counter = duplicates if outcome == "duplicate" else processed
        counter[event["id"]] = counter.get(event["id"], 0) + 1
        if outcome != "duplicate" and not outcome.startswith("synced: "):
            raise BenchError(f"{event['type']} {event['id']} was not processed: {outcome}")
    posted: dict[str, int] = {}
    for event in posts:
        posted[event["id"]] = posted.get(event["id"], 0) + 1
    for event_id, times in posted.items():
        if processed.get(event_id) != 1 or duplicates.get(event_id, 0) != times - 1:
            raise BenchError(
                f"{event_id}: posted {times}x, processed {processed.get(event_id, 0)}x"
            )
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = conn.scalar(
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.event_id.in_(list(posted)))
        )
        rows = dict(
            conn.execute(
                select(BillingSubscription.stripe_subscription_id, BillingSubscription.status)
            ).all()
        )
    engine.dispose()
    if stored != len(posted):
        raise BenchError(f"{stored} events stored for {len(posted)} distinct ids")
    if rows != {sub_id: sub["status"] for sub_id, sub in fake.subscriptions.items()}:
        raise BenchError("stored subscriptions differ from Stripe's")
    return sum(duplicates.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="posts in all")
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of redeliveries")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--wipe", action="store_true", help="let the bench reset that database")
    parser.add_argument("--workers", type=int, default=WORKERS, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=THREADS, help="per worker; 1: sync")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="client threads")
    parser.add_argument(
        "--late",
        type=int,
        default=0,
        help="seconds between an event's creation and its first post (0: at once, as live "
        "deliveries; 3600: Stripe retrying what queued during an hour's outage)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of baseline then app, new events each"
    )
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    unique = round(args.events * (1 - args.duplicates))
    per_round = max(1, unique // len(TYPES_PER_SUBSCRIPTION))
    subscriptions = per_round * args.rounds
    fake, events_by_sub = stripe_state(subscriptions)
    rng = random.Random(args.seed)
    # Each round: its own subscriptions and events, so every round's events are new.
    streams = [
        interleave(events_by_sub[r * per_round : (r + 1) * per_round]) for r in range(args.rounds)
    ]
    rounds = [with_redeliveries(stream, args.events, rng) for stream in streams]
    posts = [post for round_posts in rounds for post in round_posts]

    with (
        tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp,
        scratch_database(args.database_url, wipe=args.wipe) as url,
    ):
        seed_readers(url, fake)
        backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
        say(
            f"setup: {args.rounds} rounds of {args.events} posts ({len(streams[0])} events "
            f"about {per_round} subscriptions + {args.events - len(streams[0])} redeliveries), "
            f"{backend}, gunicorn -w {args.workers} --threads {args.threads}, "
            f"{args.connections} connections, events created {args.late} s before posting"
        )
        stripe_process, api_base = start_fake_stripe(fake, tmp)
        env = {
            **os.environ,
            "NEWSLETTER_ENV": "development",
            "NEWSLETTER_INSTANCE": tmp,
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-" + "x" * 40,
            "BASE_URL": "https://www.bothsidesdaily.com",
            "OUTBOX_DIR": str(Path(tmp) / "outbox"),
            "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_API_BASE": api_base,
            "STRIPE_PRICE_ID": PRICE_ID,
            "STRIPE_WEBHOOK_SECRET": SECRET,
        }
        logs = Path(tmp)
        # Other ids (their subscriptions are not at Stripe): warms every worker, then ignored.
        warmup = interleave(stripe_state(args.workers * args.threads)[1])
        server: dict[str, Any] = {"env": env, "workers": args.workers, "threads": args.threads}
        n = args.connections
        database = make_url(url).database or ""
        base_took = took = 0.0
        answers: list[tuple[int, bytes]] = []
        base_cpu: dict[str, float] = {}
        app_cpu: dict[str, float] = {}
        busy: list[float] = []
        try:
            baseline = gunicorn(
                "baseline", "bench.webhooks:baseline_app()", log=logs / "b.log", **server
            )
            app = gunicorn("app", "newsletter.app:create_app()", log=logs / "a.log", **server)
            with baseline as (bp, baseline_pid), app as (ap, app_pid):
                post_all(bp, rounds[0][:200], Poster(), n)  # warm-up
                post_all(ap, warmup, Poster(), n)
                poster = Poster(args.late)
                for number, round_posts in enumerate(rounds):
                    # Interleaved, so that a burst of the shared machine's other work
                    # lands on both sides.
                    cpu = CpuUse({"server": lambda: process_tree(baseline_pid)})
                    client = time.process_time()
                    base_seconds, _ = post_all(bp, round_posts, Poster(), n)
                    base_took += base_seconds
                    add(base_cpu, cpu.used()[0], client=time.process_time() - client)
                    groups = {
                        "server": lambda: process_tree(app_pid),
                        "PostgreSQL": lambda: postgres_pids(database),
                        "fake Stripe": lambda: [stripe_process.pid],
                    }
                    if backend != "PostgreSQL":
                        del groups["PostgreSQL"]
                    cpu = CpuUse(groups)
                    client = time.process_time()
                    seconds, round_answers = post_all(ap, round_posts, poster, n)
                    took += seconds
                    used, round_busy = cpu.used()
                    add(app_cpu, used, client=time.process_time() - client)
                    busy.append(round_busy)
                    answers += round_answers
                    say(
                        f"round {number + 1}: app {len(round_posts) / seconds:.0f} posts/s, "
                        f"baseline {len(round_posts) / base_seconds:.0f} posts/s, ratio "
                        f"{base_seconds / seconds:.2f}"
                    )
                # Context: every post again, now all redeliveries: what recording an event
                # id costs on its own (and each must be turned away).
                again_took, again = post_all(ap, posts, poster, n)
        finally:
            stripe_process.terminate()
            stripe_process.wait(10)
        duplicates = check(url, fake, posts, answers)
        if any(json.loads(body)["outcome"] != "duplicate" for _, body in again):
            raise BenchError("a redelivery in the second pass was processed again")

    base_rate = len(posts) / base_took
    rate = len(posts) / took
    say(
        f"checks: {duplicates} redeliveries answered duplicate, each event processed once; "
        f"all {len(posts)} posts again: all duplicate"
    )
    settled = sum(b"(stored from a later read)" in body for _, body in answers)
    say(
        f"{len(posts) - duplicates - settled} events re-read Stripe; {settled} were about a "
        "subscription stored from a later read, and were answered from it"
    )
    say(f"app answering redeliveries only: {len(posts) / again_took:.0f} posts/s")
    for name, cpu_seconds, extra in (
        ("the app", app_cpu, f"; machine {min(busy):.0%}-{max(busy):.0%} busy"),
        ("the baseline", base_cpu, ""),
    ):
        per_post = ", ".join(f"{k} {v / len(posts) * 1e6:.0f}" for k, v in cpu_seconds.items())
        say(f"CPU per post (µs), {name}: {per_post}{extra}")
    ratio = rate / base_rate
    say(
        f"webhooks: {rate:.0f} posts/s vs baseline {base_rate:.0f} posts/s, ratio {ratio:.3f} "
        f"(target >= {RATIO_TARGET})"
    )
    if ratio < RATIO_TARGET:
        sys.exit(1)


def add(totals: dict[str, float], used: dict[str, float], **more: float) -> None:
    for name, seconds in {**used, **more}.items():
        totals[name] = totals.get(name, 0.0) + seconds


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        say(f"error: {exc}")
        sys.exit(2)
