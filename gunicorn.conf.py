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
