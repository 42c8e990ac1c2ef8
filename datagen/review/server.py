"""The review's web server: the page, the items, their images, and the labels they get, on 127.0.0.1.

Every request must carry the session's token (`?token=`, made fresh at each start and printed in the URL) and a
Host header naming this server (a DNS-rebinding page names its own host), and a POST must come from this origin:
another local page or user cannot read the pairs or write labels. Every text reaches the page as JSON that the page
puts in place with `textContent`; the page's own assets are served with a Content-Security-Policy that allows no
other origin and no inline script.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import threading
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from datagen.errors import ConfigError
from datagen.labels import ASPECTS, VERDICTS, Label, append, read_labels
from datagen.review.sample import Item

MAX_BODY = 16_384
"""A label's POST body is a few hundred bytes; anything larger is refused unread."""
CSP = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'"
ASSETS = ("review.js", "review.css")


class Review:
    """What the server serves: the items, their images and the labels store of OUT."""

    def __init__(self, out, items: list[Item], images: dict[int, dict[str, tuple[str, bytes]]], token: str):
        self.out, self.items, self.images, self.token = out, items, images, token
        self.lock = threading.Lock()

    def state(self, annotator: str) -> dict[str, Any]:
        """The items (what may be shown before a label) and which of them `annotator` labelled already."""
        ids = {(item.key, item.candidate): item.id for item in self.items}
        done = sorted(
            ids[label.item]
            for label in read_labels(self.out, sources=("review",))
            if label.annotator == annotator and label.item in ids
        )
        return {
            "items": [
                {"id": i.id, "task": i.task, "instruction": i.instruction, "images": sorted(self.images.get(i.id, {}))}
                for i in self.items
            ],
            "labelled": done,
            "verdicts": list(VERDICTS),
            "aspects": list(ASPECTS),
        }

    def label(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append one label (durably) and reveal what the gates said of the item."""
        try:
            item = self.items[int(body["id"])]
        except (KeyError, ValueError, TypeError, IndexError):
            raise ConfigError("no such item") from None
        aspects = body.get("aspects") or {}
        if not isinstance(aspects, dict) or not all(isinstance(v, bool) for v in aspects.values()):
            raise ConfigError("aspects: an object of true/false values")
        label = Label(
            item.key, item.candidate, item.task, str(body.get("label")), str(body.get("annotator")), "review", aspects
        )
        with self.lock:
            append(self.out, label)
        return {"saved": asdict(label), "status": item.status, "reason": item.reason, "scores": item.scores}


def handler(review: Review, allowed_hosts: set[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "datagen-review"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  quiet: the terminal shows progress
            return

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value).encode())

        def _allowed(self, query: dict[str, list[str]]) -> bool:
            if self.headers.get("Host", "") not in allowed_hosts:
                self._json(HTTPStatus.FORBIDDEN, {"error": "unknown Host"})
                return False
            given = (query.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), review.token.encode()):
                self._json(HTTPStatus.FORBIDDEN, {"error": "no or wrong token: open the URL `datagen review` printed"})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802  http.server's name
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/favicon.ico":  # asked by every browser, without the token: nothing to show
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
                return
            if not self._allowed(query):
                return
            if url.path == "/":
                page = resources.files("datagen.review").joinpath("assets/review.html").read_text()
                self._send(HTTPStatus.OK, page.replace("{{token}}", review.token).encode(), "text/html; charset=utf-8")
            elif url.path.startswith("/assets/") and url.path[len("/assets/") :] in ASSETS:
                name = url.path[len("/assets/") :]
                data = resources.files("datagen.review").joinpath(f"assets/{name}").read_bytes()
                self._send(HTTPStatus.OK, data, mimetypes.guess_type(name)[0] or "application/octet-stream")
            elif url.path == "/api/state":
                annotator = (query.get("annotator") or [""])[0]
                self._json(HTTPStatus.OK, review.state(annotator))
            elif url.path.startswith("/api/image/"):
                parts = url.path.split("/")[3:]
                try:
                    member, data = review.images[int(parts[0])][parts[1]]
                except (KeyError, ValueError, IndexError):
                    self._json(HTTPStatus.NOT_FOUND, {"error": "no such image"})
                    return
                self._send(HTTPStatus.OK, data, mimetypes.guess_type(member)[0] or "application/octet-stream")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if not self._allowed(parse_qs(url.query)):
                return
            origin = self.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc not in allowed_hosts:
                self._json(HTTPStatus.FORBIDDEN, {"error": "cross-origin request"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if url.path != "/api/label" or not 0 < length <= MAX_BODY:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "POST /api/label with a JSON label"})
                return
            try:
                body = json.loads(self.rfile.read(length))
                self._json(HTTPStatus.OK, review.label(body if isinstance(body, dict) else {}))
            except (ValueError, ConfigError) as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)[:300]})

    return Handler


def serve(review: Review, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for `review` bound to host:port (0: a free port), not yet serving (call serve_forever)."""
    server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    bound = server.server_address[1]
    names = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "localhost") else {host}
    server.RequestHandlerClass = handler(review, {f"{name}:{bound}" for name in names})
    server.daemon_threads = True
    return server
