"""The baseline of bench/clicks.py: a bare Flask redirect, served by the same gunicorn
settings as the app (`gunicorn bench.baseline_app:app` from the project root)."""

from flask import Flask, redirect

app = Flask(__name__)


@app.get("/r/<token>")
def tracked_link(token: str):  # type: ignore[no-untyped-def]
    return redirect("/x", 302)
