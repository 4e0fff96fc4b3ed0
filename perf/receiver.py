"""A webhook receiver for perf.bench_webhooks, in a process of its own so its
CPU is neither the benchmark's nor the stack's. Loopback only.

    python -m perf.receiver PORT

POST /ep/<n>    answered 204 at once; the lag (receipt - the payload's
                created_at, the event's commit) is recorded per path
POST /hang/<n>  answered 204 after HANG_S (the sender gives up first)
GET /stats      what was received since the last GET /stats?reset=1, as JSON
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_S = 15.0


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.lags_ms: list[float] = []
        self.times: list[float] = []  # receipts, Unix time
        self.paths: dict[str, int] = {}
        self.hung = 0

    def snapshot(self, reset: bool) -> dict:
        with self.lock:
            figures = {
                "received": len(self.lags_ms),
                "lags_ms": self.lags_ms,
                "first": min(self.times, default=None),
                "last": max(self.times, default=None),
                "paths": len(self.paths),
                "hung": self.hung,
            }
            if reset:
                self.reset()
        return figures


TALLY = Tally()
CLOSING = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: thousands of requests
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        received = time.time()
        if self.path.startswith("/hang/"):
            with TALLY.lock:
                TALLY.hung += 1
            CLOSING.wait(HANG_S)
        else:
            created = datetime.fromisoformat(json.loads(body)["created_at"]).timestamp()
            with TALLY.lock:
                TALLY.lags_ms.append((received - created) * 1000)
                TALLY.times.append(received)
                TALLY.paths[self.path] = TALLY.paths.get(self.path, 0) + 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps(TALLY.snapshot(reset="reset=1" in self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main() -> None:
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        CLOSING.set()


if __name__ == "__main__":
    main()
