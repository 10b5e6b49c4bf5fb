"""A local OpenAI-compatible chat-completions server for tests (stdlib HTTP on 127.0.0.1, port 0).

`ChatServer(script)` answers POST /v1/chat/completions with `script(n, body, headers) -> Reply` for
request n and records every request, so "a rerun makes zero calls" is the server's count, not the
client's word. The `chat_server` fixture starts servers and closes them (and fails the test on any
request the script did not expect). A test module gets the fixture with
`pytest_plugins = ("chat_server",)`. (PYTEST_DONT_REWRITE: test modules import it before pytest
loads it as a plugin; it reports problems with pytest.fail, not assert.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the completion text (status 200)
    error: str = "scripted error"  # the error message (other statuses)
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0


class ChatServer:
    """Speaks POST /v1/chat/completions; `script(n, body, headers)` -> Reply for request n (0-based).

    Header names reach the script in lower case.
    """

    def __init__(self, script: Callable[[int, dict, dict], Reply], max_requests: int = 40):
        self.script, self.max_requests = script, max_requests
        self.requests: list[tuple[dict, dict]] = []  # (body, headers)
        self.problems: list[str] = []
        self.release = threading.Event()  # ends every scripted delay at teardown
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def record(self, path: str, body: dict, headers: dict) -> int | None:
        with self._lock:
            if path != CHAT_PATH:
                self.problems.append(f"unexpected path {path}")
                return None
            if len(self.requests) >= self.max_requests:
                self.problems.append("more requests than the test allows")
                return None
            self.requests.append((body, headers))
            return len(self.requests) - 1

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        owner: ChatServer = self.server.owner
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        headers = {name.lower(): value for name, value in self.headers.items()}
        n = owner.record(self.path, body, headers)
        reply = owner.script(n, body, headers) if n is not None else Reply(418, error="refused")
        if reply.delay_s:
            owner.release.wait(reply.delay_s)
        if reply.status == 200:
            payload = {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": reply.text}}]}
        else:
            payload = {"error": {"message": reply.error, "type": "test", "code": None}}
        data = json.dumps(payload).encode()
        try:
            self.send_response(reply.status)
            for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    servers: list[ChatServer] = []

    def start(script: Callable[[int, dict, dict], Reply], max_requests: int = 40) -> ChatServer:
        servers.append(ChatServer(script, max_requests))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
    problems = [p for server in servers for p in server.problems]
    if problems:
        pytest.fail(f"chat server: {problems}")
