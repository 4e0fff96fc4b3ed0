"""Webhook receivers on 127.0.0.1 for tests: real sockets, real HTTP (and TLS).

A `Receiver` records every connection it accepts and every request it reads,
and answers each request as the next queued `Answer` says (200 when none is
queued): a status, headers such as Retry-After or Location, a delay, a body of
any size, or its head or body dripped out a byte at a time. Waits end as soon
as the receiver closes, so a test never waits for a hang it provoked.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CERTS = Path(__file__).resolve().parent / "certs"
CA_FILE = str(CERTS / "ca.pem")  # the CA that signed the TLS receivers' certificate

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """How a receiver answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # Retry-After, Location, ...
    body: bytes = b""
    delay_s: float = 0.0  # wait this long before answering (a hang: past the client's timeout)
    endless_body: bool = False  # stream body bytes, with no length, until the client goes
    drip: str = ""  # "head" or "body": send that part one byte every drip_s
    drip_s: float = 0.1


@dataclass(frozen=True)
class Received:
    """One request as the receiver read it."""

    method: str
    path: str
    headers: Message  # case-insensitive lookups: headers["webhook-id"]
    body: bytes


class Receiver:
    """An HTTP (or, with `tls`, HTTPS) server on 127.0.0.1 serving from a thread."""

    def __init__(self, *, tls: bool = False):
        self.requests: list[Received] = []
        self.connections = 0
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self.closing = threading.Event()
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(CERTS / "server.pem", CERTS / "server-key.pem")
        self._server = _Server(self, context)
        self.port = self._server.server_address[1]
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def answer(self, answer: Answer | None = None, **how) -> None:
        """Queue how to answer the next request not yet answered."""
        with self._lock:
            self._answers.append(answer or Answer(**how))

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connected(self) -> None:
        with self._lock:
            self.connections += 1

    def _next(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
            return self._answers.pop(0) if self._answers else Answer()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver, tls: ssl.SSLContext | None):
        self.receiver = receiver
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request, client_address) -> bool:
        self.receiver._connected()
        return True

    def finish_request(self, request, client_address) -> None:
        """In the request's own thread: the TLS handshake, then the request."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that rejected our certificate, as some tests want
        with request:
            super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        """Clients hanging up mid-answer are what several tests do on purpose."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.receiver._next(Received("POST", self.path, self.headers, body))
        closing = self.server.receiver.closing
        if answer.delay_s and closing.wait(answer.delay_s):
            return
        with contextlib.suppress(OSError):
            self._send(answer, closing)

    def _send(self, answer: Answer, closing: threading.Event) -> None:
        head = [f"HTTP/1.1 {answer.status} {_phrase(answer.status)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in answer.headers.items()]
        if not answer.endless_body:
            head.append(f"Content-Length: {len(answer.body)}")
        self._write("\r\n".join([*head, "", ""]).encode(), answer.drip == "head", answer, closing)
        if answer.endless_body:
            while not closing.is_set():
                self.wfile.write(b"x" * CHUNK)
        else:
            self._write(answer.body, answer.drip == "body", answer, closing)

    def _write(self, data: bytes, drip: bool, answer: Answer, closing: threading.Event) -> None:
        if not drip:
            self.wfile.write(data)
            return
        for i in range(len(data)):
            self.wfile.write(data[i : i + 1])
            if closing.wait(answer.drip_s):
                return

    def log_message(self, format, *args) -> None:
        """Quiet: the test reads `requests` instead."""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
