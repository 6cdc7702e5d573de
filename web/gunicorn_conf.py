"""Gunicorn settings for serving manuscripts-search in production.

    gunicorn -c web/gunicorn_conf.py 'web:create_app()'

(from the virtual environment; the app reads MSEARCH_* settings from the environment as the CLI
does). Gunicorn's own flags override the values here: ``-b 0.0.0.0:8000``, ``-w 2``,
``--threads 8``, ``--timeout 120``, ``--preload``; ``kill -HUP <master pid>`` restarts the workers
gracefully (new code, new settings) while requests in flight finish.

Sizing. Each *process* holds its own copy of the model (SigLIP 2 base: about 1.5 GB of float32
weights) and, by default, of each HNSW index (about 3.4 KB per 768-d vector with M=32: some
340 MB per 100 000 vectors), both loaded lazily on the first search in that process. So memory
grows with workers and throughput with threads: encoding (torch) and hnswlib queries release
the GIL, so one process with 8 threads serves concurrent searches from one copy. Use as few
workers as give you resilience (2), and raise threads before workers.

With ``--preload`` the master loads the saved indexes before forking (:func:`when_ready`), so the
workers share those pages copy-on-write until an index changes on disk; then each worker loads
the new one into its own memory. The model is never preloaded: torch must not be initialised
before ``fork``. bench/load.py measures both (docs/production.md has the figures).

A rebuilt index is picked up without a restart: each worker notices the new files (two ``stat``
calls at most once a second) and swaps the new index in while requests in flight finish on the
old one.
"""
from __future__ import annotations

bind = "127.0.0.1:8000"  # put a reverse proxy with TLS in front
workers = 2
threads = 8
worker_class = "gthread"
timeout = 120  # a cold first search in a worker loads the model
graceful_timeout = 30
keepalive = 5
# Recycling workers would throw away their loaded model and index; keep them.
max_requests = 0
# The app writes one JSON access record per request, with its request id (web/logging_setup.py);
# gunicorn's own access log would duplicate it without the id.
accesslog = None
errorlog = "-"
loglevel = "info"
# Gunicorn's own records (worker boots, timeouts, signals) as JSON lines like the app's.
logconfig_dict = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"json": {"()": "web.logging_setup.JsonFormatter"}},
    "handlers": {"json_stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["json_stderr"]},
    "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["json_stderr"], "propagate": False}},
}
# Request lines and headers are bounded, so an oversized query string is refused before Flask.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


def when_ready(server):
    """With ``--preload``, load every saved index in the master so that workers share it."""
    if not server.cfg.preload_app:
        return
    app = server.app.wsgi()
    from web.resources import get_index, saved_indexes

    # Shards on Ray Serve hold their own indexes; a Ray connection must not be opened before fork.
    on_ray = app.config["MSEARCH_CONFIG"].search_backend == "ray"
    with app.app_context():
        for saved in saved_indexes(app):
            if saved.get("space") and not (on_ray and not saved["space"].startswith("text:")):
                index = get_index(app, saved["space"])
                server.log.info("preloaded index %s (%d vectors)", saved["space"], len(index))


def worker_exit(server, worker):
    """Close the worker's pooled database connections (PostgreSQL would log aborted clients)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and "msearch.engine" in getattr(app, "extensions", {}):
        from web.database import dispose_engine

        dispose_engine(app)


def post_fork(server, worker):
    """A forked worker must not reuse the master's database connections (there should be none,
    since nothing connects before the first request, but preloading may change that)."""
    app = getattr(server.app, "callable", None)
    if app is not None and "msearch.engine" in getattr(app, "extensions", {}):
        app.extensions["msearch.engine"].dispose(close=False)
