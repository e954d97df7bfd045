"""gunicorn settings for fieldsync-server (`fieldsync-server run` reads this file).

Privacy first: no access log, and an error log that names no client (see
server/logs.py). Loopback only: TLS and the public address belong to the reverse
proxy in front (deploy/Caddyfile).
"""

import gc
import multiprocessing

bind = ["127.0.0.1:8000"]

# Sync workers: each request is short and CPU-bound (signature checks), and the
# proxy in front buffers slow clients. Writes are serialised by SQLite anyway.
workers = 2 * multiprocessing.cpu_count()
worker_class = "sync"
timeout = 60  # a 500-bundle push waits at most 10 s for the write lock
graceful_timeout = 20
keepalive = 2

# Request-line and header limits (gunicorn's defaults, pinned): requests that
# break them are refused before the application sees them. Bodies are bounded by
# FIELDSYNC_MAX_BODY in the application.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

# No access log: it would record addresses, user agents and workspace ids.
accesslog = None
errorlog = "-"
loglevel = "info"
logger_class = "server.logs.GunicornLogger"
capture_output = False

proc_name = "fieldsync-server"
# gunicorn's control socket (a unix socket under $HOME) is not needed: signals do.
control_socket_disable = True
preload_app = False  # each worker opens its own database connections


def post_worker_init(worker):
    """Move the app's startup objects out of the collector's way.

    A push allocates tens of thousands of short-lived objects; without this each
    full collection also walks every module, schema and route object (about 4%
    of a push's time).
    """
    gc.collect()
    gc.freeze()
