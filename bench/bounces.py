"""Bounce and complaint webhooks: 10,000 signed provider events (20% of them redeliveries)
posted to the app, against a signature-only endpoint in the same run.

    .venv/bin/python bench/bounces.py [--events 10000] [--duplicates 0.2] [--rounds 1]
        [--database-url URL] [--wipe] [--workers N] [--threads N] [--connections 32]

1. Setup (not timed): a scratch database (PostgreSQL by default, test_h15 on this
   machine; its schema is dropped and made again) with one confirmed reader per event,
   and a SendGrid ECDSA P-256 key pair and a Mailgun signing key made for the run.
2. The posts rotate over three providers, each signed its own way when it is sent:
   Mailgun (HMAC-SHA256 over timestamp + a fresh token, as Mailgun signs every attempt),
   SendGrid (ECDSA over timestamp + body, one event per batch) and Postmark (basic auth).
   90% hard bounces, 5% soft bounces, 5% complaints, each to its own reader; then
   redeliveries of earlier events at random later places, until they are `--duplicates`
   of all posts.
3. Both servers run gunicorn with production's settings (gunicorn.conf.py) on loopback and
   get the same posts from the same client (`bench/webhooks.py`'s: 32 threads, one short
   connection per post). Baseline: a Flask app whose routes only verify each provider's
   signature with the app's own functions (`newsletter.deliverability.providers.*`). The
   app: the real `POST /webhooks/<provider>`. Rounds interleave baseline then app.
4. Checks: every event id got exactly one "recorded" answer and every other post of it
   "duplicate"; the reports table holds exactly the unique events; every reader of a hard
   bounce or complaint is suppressed.

Prints the ratio last (events/s of the app over the baseline's).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from common import BenchError, CpuUse, postgres_pids, process_tree, say, scratch_database  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from sqlalchemy import create_engine, func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from newsletter.deliverability.models import ReceivedReport  # noqa: E402
from newsletter.deliverability.providers import Malformed, Unauthentic, mailgun, postmark, sendgrid  # noqa: E402  # noqa: E402
from newsletter.readers.models import Reader, ReaderStatus  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql+psycopg://root@127.0.0.1:5432/test_h15"
MAILGUN_KEY = "bench-mailgun-signing-key"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "bench-password"  # noqa: S105 (a test secret)
PROVIDERS = ("mailgun", "sendgrid", "postmark")


def baseline_app() -> Flask:
    """Endpoints that only verify the signature, as each app route's first step does."""
    app = Flask("baseline")
    key = sendgrid.load_public_key(os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"])

    def answer(check):  # type: ignore[no-untyped-def]
        try:
            check(request.get_data(cache=False))
        except (Unauthentic, Malformed) as exc:
            return jsonify(error=str(exc)), 403
        return jsonify(received=1)

    @app.post("/webhooks/mailgun")
    def mailgun_webhook():  # type: ignore[no-untyped-def]
        return answer(
            lambda raw: mailgun.verify(json.loads(raw), MAILGUN_KEY, now=time.time(), tolerance=300)
        )

    @app.post("/webhooks/sendgrid")
    def sendgrid_webhook():  # type: ignore[no-untyped-def]
        headers = request.headers
        return answer(
            lambda raw: sendgrid.verify(
                raw,
                headers.get("X-Twilio-Email-Event-Webhook-Signature"),
                headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
                key,
                now=time.time(),
                tolerance=300,
            )
        )

    @app.post("/webhooks/postmark")
    def postmark_webhook():  # type: ignore[no-untyped-def]
        auth = request.headers.get("Authorization")
        return answer(lambda raw: postmark.check_auth(auth, POSTMARK_USER, POSTMARK_PASSWORD))

    return app


def make_events(count: int, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for n in range(count):
        roll = rng.random()
        kind = "hard" if roll < 0.9 else ("soft" if roll < 0.95 else "complaint")
        events.append(
            {"n": n, "provider": PROVIDERS[n % 3], "kind": kind, "email": f"r{n}@bench.example"}
        )
    return events


def with_redeliveries(
    events: list[dict[str, Any]], total: int, rng: random.Random
) -> list[dict[str, Any]]:
    posts = list(events)
    while len(posts) < total:
        original = events[rng.randrange(len(events))]
        at = posts.index(original)
        posts.insert(rng.randrange(at + 1, len(posts) + 1), original)
    return posts


class Poster:
    """Each post built and signed when it is sent."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.private_key = private_key
        auth = base64.b64encode(f"{POSTMARK_USER}:{POSTMARK_PASSWORD}".encode()).decode()
        self.postmark_auth = f"Basic {auth}"

    def __call__(self, event: dict[str, Any]) -> bytes:
        n, email, kind = event["n"], event["email"], event["kind"]
        now = int(time.time())
        headers: dict[str, str] = {}
        if event["provider"] == "mailgun":
            token = secrets.token_hex(25)
            signature = hmac.new(MAILGUN_KEY.encode(), f"{now}{token}".encode(), hashlib.sha256)
            data: dict[str, Any] = {
                "id": f"mg-{n}",
                "timestamp": now,
                "recipient": email,
                "event": "complained" if kind == "complaint" else "failed",
                "severity": "permanent" if kind == "hard" else "temporary",
                "delivery-status": {"code": 550 if kind == "hard" else 452, "message": "bench"},
            }
            body = json.dumps(
                {
                    "signature": {
                        "timestamp": str(now),
                        "token": token,
                        "signature": signature.hexdigest(),
                    },
                    "event-data": data,
                }
            ).encode()
        elif event["provider"] == "sendgrid":
            item = {
                "email": email,
                "timestamp": now,
                "event": "spamreport" if kind == "complaint" else "bounce",
                "type": "bounce" if kind == "hard" else "blocked",
                "sg_event_id": f"sg-{n}",
                "status": "5.1.1" if kind == "hard" else "4.0.0",
            }
            body = json.dumps([item]).encode()
            signed = self.private_key.sign(str(now).encode() + body, ec.ECDSA(hashes.SHA256()))
            headers = {
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signed).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": str(now),
            }
        else:
            body = json.dumps(
                {
                    "RecordType": "SpamComplaint" if kind == "complaint" else "Bounce",
                    "ID": n,
                    "Type": {"hard": "HardBounce", "soft": "SoftBounce"}.get(kind, "SpamComplaint"),
                    "Name": "bench",
                    "Details": "bench",
                    "Email": email,
                    "BouncedAt": "2026-12-02T12:00:00Z",
                }
            ).encode()
            headers = {"Authorization": self.postmark_auth}
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (
            f"POST /webhooks/{event['provider']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{head}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body


def seed_readers(url: str, count: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(Reader),
            [
                {
                    "email": f"r{n}@bench.example",
                    "email_key": f"r{n}@bench.example",
                    "status": ReaderStatus.CONFIRMED,
                }
                for n in range(count)
            ],
        )
    engine.dispose()


def check(url: str, posts: list[dict[str, Any]], answers: list[tuple[int, bytes]]) -> int:
    recorded: dict[tuple[str, int], int] = {}
    duplicates = 0
    for event, (_, body) in zip(posts, answers, strict=True):
        found = json.loads(body)
        key = (event["provider"], event["n"])
        recorded[key] = recorded.get(key, 0) + found.get("recorded", 0)
        duplicates += found.get("duplicate", 0)
    unique = {(e["provider"], e["n"]) for e in posts}
    wrong = [k for k in unique if recorded.get(k) != 1]
    if wrong:
        raise BenchError(f"{len(wrong)} events not recorded exactly once, e.g. {wrong[0]}")
    if duplicates != len(posts) - len(unique):
        raise BenchError(f"{duplicates} duplicates answered for {len(posts) - len(unique)}")
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = conn.scalar(
            select(func.count())
            .select_from(ReceivedReport)
            .where(ReceivedReport.recipient.like("r%@bench.example"))
        )
        suppressed = conn.scalar(
            select(func.count()).select_from(Reader).where(Reader.suppression.is_not(None))
        )
    engine.dispose()
    if stored != len(unique):
        raise BenchError(f"{stored} reports stored for {len(unique)} unique events")
    expected = sum(
        1 for e in {(e["provider"], e["n"]): e for e in posts}.values() if e["kind"] != "soft"
    )
    if suppressed != expected:
        raise BenchError(f"{suppressed} readers suppressed, expected {expected}")
    return duplicates


def main() -> None:
    # bench/webhooks.py's servers and client (not the project's `webhooks` package).
    import bench.webhooks as stripe_bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="posts per round")
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--wipe", action="store_true")
    parser.add_argument("--workers", type=int, default=stripe_bench.WORKERS)
    parser.add_argument("--threads", type=int, default=stripe_bench.THREADS)
    parser.add_argument("--connections", type=int, default=stripe_bench.CONNECTIONS)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    unique = round(args.events * (1 - args.duplicates))
    everything = make_events(unique * args.rounds, rng)
    rounds = [
        with_redeliveries(everything[r * unique : (r + 1) * unique], args.events, rng)
        for r in range(args.rounds)
    ]
    posts = [p for r in rounds for p in r]
    private_key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    poster = Poster(private_key)

    with (
        tempfile.TemporaryDirectory(prefix="bench-bounces-") as tmp,
        scratch_database(args.database_url, wipe=args.wipe) as url,
    ):
        seed_readers(url, len(everything))
        backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
        say(
            f"setup: {args.rounds} round(s) of {args.events} posts ({unique} events + "
            f"{args.events - unique} redeliveries) over Mailgun, SendGrid and Postmark, "
            f"{backend}, gunicorn -w {args.workers} --threads {args.threads}, "
            f"{args.connections} connections"
        )
        env = {
            **os.environ,
            "NEWSLETTER_ENV": "development",
            "NEWSLETTER_INSTANCE": tmp,
            "DATABASE_URL": url,
            "SECRET_KEY": "bench-" + "x" * 40,
            "OUTBOX_DIR": str(Path(tmp) / "outbox"),
            "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public,
            "POSTMARK_WEBHOOK_USER": POSTMARK_USER,
            "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_PASSWORD,
        }
        server: dict[str, Any] = {"env": env, "workers": args.workers, "threads": args.threads}
        logs = Path(tmp)
        database = make_url(url).database or ""
        n = args.connections
        base_took = took = 0.0
        answers: list[tuple[int, bytes]] = []
        app_cpu: dict[str, float] = {}
        base_cpu: dict[str, float] = {}
        baseline = stripe_bench.gunicorn(
            "baseline", "bench.bounces:baseline_app()", log=logs / "b.log", **server
        )
        app = stripe_bench.gunicorn(
            "app", "newsletter.app:create_app()", log=logs / "a.log", **server
        )
        warmup = [
            {**e, "n": -1 - i, "email": f"nobody{i}@bench.example"}
            for i, e in enumerate(make_events(30, rng))
        ]
        with baseline as (bport, baseline_pid), app as (aport, app_pid):
            stripe_bench.post_all(bport, warmup, poster, n)
            stripe_bench.post_all(aport, warmup, poster, n)
            for number, round_posts in enumerate(rounds):
                cpu = CpuUse({"server": lambda: process_tree(baseline_pid)})
                base_seconds, _ = stripe_bench.post_all(bport, round_posts, poster, n)
                base_took += base_seconds
                stripe_bench.add(base_cpu, cpu.used()[0])
                groups = {
                    "server": lambda: process_tree(app_pid),
                    "PostgreSQL": lambda: postgres_pids(database),
                }
                if backend != "PostgreSQL":
                    del groups["PostgreSQL"]
                cpu = CpuUse(groups)
                seconds, round_answers = stripe_bench.post_all(aport, round_posts, poster, n)
                took += seconds
                stripe_bench.add(app_cpu, cpu.used()[0])
                answers += round_answers
                say(
                    f"round {number + 1}: app {len(round_posts) / seconds:.0f} events/s, "
                    f"baseline {len(round_posts) / base_seconds:.0f} events/s"
                )
        duplicates = check(url, posts, answers)

    say(
        f"checks: {len(posts) - duplicates} events recorded once each, {duplicates} "
        "redeliveries answered duplicate, the reports table holds exactly the unique events"
    )
    for name, used in (("the app", app_cpu), ("the baseline", base_cpu)):
        per = ", ".join(f"{k} {v / len(posts) * 1e6:.0f}" for k, v in used.items())
        say(f"CPU per event (µs), {name}: {per}")
    rate, base_rate = len(posts) / took, len(posts) / base_took
    say(
        f"bounces: {rate:.0f} events/s vs signature-only {base_rate:.0f} events/s, "
        f"ratio {rate / base_rate:.3f}"
    )


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        say(f"bench failed: {exc}")
        sys.exit(1)
