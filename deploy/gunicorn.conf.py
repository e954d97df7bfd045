"""gunicorn settings for fieldsync-server (`fieldsync-server run` reads this file).

Privacy first: no access log, and an error log that names no client (see
server/logs.py). Loopback only: TLS and the public address belong to the reverse
proxy in front (deploy/Caddyfile).

Slow clients are handled here, not only by the proxy: the shipped Caddyfile
buffers request bodies, but the server must hold without it (a proxy configured
otherwise, a client on loopback). docs/RELIABILITY.md has the promises and tests.
"""

import gc
import multiprocessing

bind = ["127.0.0.1:8000"]

# gunicorn's threaded worker, hardened (server/worker.py): a connection gets a
# thread only once its request head has arrived (a head must arrive within
# FIELDSYNC_HEADER_TIMEOUT, 10 s), a body is read only after the request's
# signature verified and within FIELDSYNC_BODY_TIMEOUT (60 s), and one key has at
# most FIELDSYNC_DEVICE_REQUESTS (2) requests in progress. So a stranger holds no
# thread at all, and a stolen key at most two of the 4 x 2 x cores threads.
# Processes for the cores (signature checks and JSON are CPU-bound, under the GIL),
# threads so that a request waiting for the write lock or a slow reader does not
# leave a core idle. Writes are serialised by SQLite anyway.
workers = 2 * multiprocessing.cpu_count()
worker_class = "server.worker.Worker"
threads = 4
worker_connections = 1000  # open connections per worker, threads and waiting heads together
# The heartbeat comes from each worker's event loop, which no request blocks: a
# worker is restarted only if that loop itself stalls this long.
timeout = 60
graceful_timeout = 20
keepalive = 2

# Request-line and header limits (gunicorn's defaults, pinned): requests that
# break them are refused before the application sees them. The worker also
# refuses a head over 32 KiB (431). Bodies are bounded by FIELDSYNC_MAX_BODY in
# the application.
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
