"""gunicorn's gthread worker, telling the app how long each request waited.

gthread's main thread accepts a connection (or sees a kept-alive one become
readable) and submits it to a ThreadPoolExecutor of --threads threads, whose
queue has no bound. Past what the threads can serve, requests wait in that
queue, where the app cannot see them: its own clock starts when a thread takes
the request. This worker stamps each connection when it is queued for a thread
and hands the stamp to the app as environ[QUEUED_AT] (time.monotonic()), so the
ingress can shed a request that waited too long before doing any work for it
(core.overload). Everything else is gunicorn's.

    gunicorn --worker-class ingress.serving.StampingThreadWorker ...
"""

from __future__ import annotations

import threading
import time

from gunicorn.workers.gthread import ThreadWorker

QUEUED_AT = "radiantgo.queued_at"
WORKER_CLASS = "ingress.serving.StampingThreadWorker"


class StampingThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._request = threading.local()  # the connection's stamp, per executor thread

    def enqueue_req(self, conn):
        conn.queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        self._request.queued_at = getattr(conn, "queued_at", None)
        return super().handle_request(req, conn)

    def load_wsgi(self):
        super().load_wsgi()
        app, request = self.wsgi, self._request

        def stamped(environ, start_response):
            environ[QUEUED_AT] = getattr(request, "queued_at", None)
            return app(environ, start_response)

        self.wsgi = stamped
