"""A local stand-in for Microsoft Teams Workflows / incoming webhooks.

Served by the standard library's HTTP server on a loopback port the OS chose.
Each path is one webhook (e.g. /qa-leads). Like Teams, it refuses with 400 a body
that is not a message with one Adaptive Card attachment; it keeps what it
accepted and can be told to answer the next posts with an error status.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
ELEMENTS = {"TextBlock", "FactSet"}


def card_problem(body: Any) -> str | None:
    """Why `body` is not a Teams message with one Adaptive Card, or None."""
    if not isinstance(body, dict) or body.get("type") != "message":
        return 'the body must be {"type": "message", ...}'
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return "one attachment expected"
    attachment = attachments[0]
    if attachment.get("contentType") != CARD_TYPE:
        return f"contentType must be {CARD_TYPE}"
    content = attachment.get("content")
    if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
        return "content must be an AdaptiveCard"
    if content.get("version") not in ("1.2", "1.3", "1.4", "1.5"):
        return "unsupported card version"
    elements = content.get("body")
    if not isinstance(elements, list) or not elements:
        return "the card has no body"
    for element in elements:
        if element.get("type") not in ELEMENTS:
            return f"unexpected element {element.get('type')!r}"
        if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
            return "a TextBlock needs text"
        if element["type"] == "FactSet":
            for fact in element.get("facts", []):
                if set(fact) != {"title", "value"} or not all(
                    isinstance(v, str) for v in fact.values()
                ):
                    return "a fact is {title, value} strings"
    for action in content.get("actions", []):
        if action.get("type") != "Action.OpenUrl" or not str(action.get("url", "")).startswith(
            ("http://", "https://")
        ):
            return "only Action.OpenUrl with an http(s) url is expected"
    return None


@dataclass(frozen=True)
class Post:
    """One accepted post: the webhook's path and the card's content."""

    path: str
    body: dict[str, Any]
    at: float

    @property
    def card(self) -> dict[str, Any]:
        content: dict[str, Any] = self.body["attachments"][0]["content"]
        return content

    @property
    def title(self) -> str:
        return str(self.card["body"][0]["text"])

    @property
    def facts(self) -> dict[str, str]:
        [fact_set] = [e for e in self.card["body"] if e["type"] == "FactSet"]
        return {fact["title"]: fact["value"] for fact in fact_set["facts"]}

    @property
    def request_id(self) -> str:
        return self.facts["Request"]


class TeamsStandin:
    """See the module docstring."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.refused: list[tuple[str, str]] = []
        self.attempts = 0
        self._answers: list[int] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, problem = standin._receive(self.path, raw)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write((problem or "1").encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> TeamsStandin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` posts with `status` (and keep nothing of them)."""
        with self._lock:
            self._answers += [status] * times

    def _receive(self, path: str, raw: bytes) -> tuple[int, str | None]:
        with self._lock:
            self.attempts += 1
            if self._answers:
                return self._answers.pop(0), "staged failure"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        problem = card_problem(body)
        with self._lock:
            if problem is not None:
                self.refused.append((path, problem))
                return 400, problem
            self.posts.append(Post(path, body, time.monotonic()))
        return 202, None

    def to(self, path: str, request_id: str) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.path == path and p.request_id == request_id]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                with self._lock:
                    seen = [(p.path, p.title) for p in self.posts]
                raise AssertionError(f"timed out; posts so far: {seen}; refused: {self.refused}")
            time.sleep(0.05)
