"""A local stand-in for Slack, served on a loopback port from a thread of the test process.

Slack cannot be reached from the tests, so this answers the Web API methods
Signoff calls (`auth.test`, `chat.postMessage`, `chat.update`,
`chat.postEphemeral`, `views.open`, `apps.connections.open`) the way Slack
does, keeps the messages it was sent, records every call, and can be told to
fail: a 429 with `Retry-After`, or a full outage. It also speaks Socket Mode on
a websocket: `hello` on connect, envelopes with an `envelope_id` pushed by the
test, and the acknowledgements the client sends back.

Point the service at it with SIGNOFF_SLACK_API_URL=standin.api_url.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from support import free_port

BOT_TOKEN = "xoxb-standin-bot-token"
APP_TOKEN = "xapp-standin-app-token"
BOT_USER = "U0SIGNOFF"
BOT_ID = "B0SIGNOFF"
TEAM = {"id": "T0STANDIN", "domain": "signoff-standin"}


@dataclass
class Call:
    """One Web API call as the stand-in received it."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None
    times: int
    when: Callable[[dict[str, Any]], bool] | None = None


class SlackStandin:
    """The stand-in server; see the module docstring."""

    def __init__(self, *, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/"
        self.calls: list[Call] = []
        # (channel, ts) -> the message as Slack keeps it
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.acks: list[dict[str, Any]] = []
        # Modals opened with views.open, as Slack holds them (with id and hash).
        self.views: list[dict[str, Any]] = []
        self.down = False
        self._failures: dict[str, list[Failure]] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._sockets: list[WebSocket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # Running it.

    def start(self) -> SlackStandin:
        app = Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                WebSocketRoute("/socket", self._socket),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="slack-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Slack stand-in did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # What the tests ask of it.

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: int | None = 1,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (those `when` accepts) with an error."""
        with self._lock:
            self._failures.setdefault(method, []).append(
                Failure(status, error, retry_after, times, when)
            )

    def recover(self) -> None:
        """End a staged outage and drop failures not yet used."""
        with self._lock:
            self.down = False
            self._failures.clear()

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self.acks.clear()
            self.views.clear()
            self._failures.clear()
            self.down = False

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Poll until `predicate()` is truthy; return its value (or fail the test)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; calls so far: {self.summary()}")
            time.sleep(0.02)

    def summary(self) -> list[str]:
        with self._lock:
            return [c.method for c in self.calls]

    def card_for(self, request_id: str) -> dict[str, Any] | None:
        """The top-level message whose buttons or link name `request_id`."""
        with self._lock:
            for message in self.messages.values():
                if message.get("thread_ts"):
                    continue
                if request_id in json.dumps(message.get("blocks") or []):
                    return dict(message)
        return None

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Replies posted in the thread of message `ts`, in order."""
        with self._lock:
            replies = [
                m
                for m in self.messages.values()
                if m["channel"] == channel and m.get("thread_ts") == ts
            ]
        return sorted(replies, key=lambda m: float(m["ts"]))

    def view_for(self, request_id: str) -> dict[str, Any] | None:
        """The last modal opened about `request_id`."""
        with self._lock:
            found = [v for v in self.views if request_id in v.get("private_metadata", "")]
        return dict(found[-1]) if found else None

    def connected_sockets(self) -> int:
        with self._lock:
            return len(self._sockets)

    def send_envelope(self, payload: dict[str, Any], kind: str = "interactive") -> str:
        """Push a Socket Mode envelope to the connected client; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "payload": payload,
        }
        with self._lock:
            socket = self._sockets[-1]
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(
            socket.send_text(json.dumps(envelope)), self._loop
        )
        future.result(timeout=5)
        return envelope_id

    # The Web API.

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        body = await request.body()
        params: dict[str, Any] = {}
        if body:
            if request.headers.get("content-type", "").startswith("application/json"):
                params = json.loads(body)
            else:
                params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        params.update(dict(request.query_params))
        for key in ("blocks", "view", "attachments"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token or params.pop("token", None)
        with self._lock:
            self.calls.append(Call(method, params, token if scheme or token else None))
            if self.down:
                return PlainTextResponse("upstream unavailable", status_code=503)
            failures = self._failures.get(method) or []
            failure = next((f for f in failures if f.when is None or f.when(params)), None)
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    failures.remove(failure)
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                return JSONResponse(
                    {"ok": False, "error": failure.error},
                    status_code=failure.status,
                    headers=headers,
                )
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        with self._lock:
            answer = handler(params)
        return JSONResponse(answer)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM['domain']}.example/",
            "team": "Signoff stand-in",
            "user": "signoff",
            "team_id": TEAM["id"],
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _message(self, channel: str, ts: str, params: dict[str, Any]) -> dict[str, Any]:
        message = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "text": params.get("text", ""),
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "blocks": params.get("blocks") or [],
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        return message

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        thread = params.get("thread_ts")
        if thread and (channel, thread) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = self._next_ts()
        message = self._message(channel, ts, params)
        self.messages[(channel, ts)] = message
        public = {k: v for k, v in message.items() if k != "channel"}
        return {"ok": True, "channel": channel, "ts": ts, "message": public}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params.get("channel"), params.get("ts"))
        old = self.messages.get(key)  # type: ignore[arg-type]
        if old is None:
            return {"ok": False, "error": "message_not_found"}
        message = self._message(old["channel"], old["ts"], params)
        message["edited"] = {"user": BOT_USER, "ts": self._next_ts()}
        self.messages[key] = message  # type: ignore[index]
        public = {k: v for k, v in message.items() if k != "channel"}
        return {
            "ok": True,
            "channel": old["channel"],
            "ts": old["ts"],
            "text": message["text"],
            "message": public,
        }

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = dict(params.get("view") or {})
        view.update(
            id=f"V{next(self._ts):08d}",
            team_id=TEAM["id"],
            state={"values": {}},
            hash=uuid.uuid4().hex[:16],
            app_id="A0SIGNOFF",
            bot_id=BOT_ID,
            root_view_id=None,
            previous_view_id=None,
        )
        view["root_view_id"] = view["id"]
        self.views.append(view)
        return {"ok": True, "view": view}

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={ticket}"}

    # Socket Mode.

    async def _socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self._loop = asyncio.get_running_loop()
        await websocket.send_text(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "standin", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0SIGNOFF"},
                }
            )
        )
        with self._lock:
            self._sockets.append(websocket)
        try:
            while True:
                text = await websocket.receive_text()
                with self._lock:
                    self.acks.append(json.loads(text))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            with self._lock:
                if websocket in self._sockets:
                    self._sockets.remove(websocket)
