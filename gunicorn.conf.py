"""gunicorn's settings for the `web` process. gunicorn reads this file from the working
directory by itself, so the Procfile's command stays as it is; its flags apply on top.

Threaded workers, because some requests wait on another service: a Stripe webhook
re-reads the subscription from Stripe's API (100-300 ms in production), and Checkout
and the customer portal call it too. While one thread waits, the worker's other threads
serve readers. Four threads per worker: enough to cover that wait at the rate Stripe
sends events; beyond that, more threads mostly add contention for the one GIL among
CPU-bound requests. `WEB_CONCURRENCY` and `WEB_THREADS` override both numbers.
"""

import os

workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS") or 4)

# Logs: the app's own set-up (text, or JSON lines with LOG_FORMAT=json) for gunicorn's
# error and access logs too. The access line leaves out the client's address, as the app
# keeps no full addresses; the request id ties it to the app's own lines.
from newsletter.logs import dict_config  # noqa: E402

logconfig_dict = dict_config(
    (os.environ.get("LOG_FORMAT") or "text").strip().lower(),
    (os.environ.get("LOG_LEVEL") or "INFO").strip().upper(),
)
accesslog = "-"
access_log_format = '"%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'

# Metrics: with METRICS_TOKEN, every worker writes its counts into one directory that
# any worker's /metrics adds up (prometheus-client's multiprocess mode). It must be set
# before the workers import the app, so here, in the master.
if os.environ.get("METRICS_TOKEN") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="newsletter-metrics-")


def on_starting(server):  # type: ignore[no-untyped-def]
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from newsletter.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(path)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from newsletter.metrics import mark_process_dead

        mark_process_dead(worker.pid)
