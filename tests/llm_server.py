"""A small OpenAI-compatible chat server on 127.0.0.1, scripted per request.

Tests drive litellm against it for real: streamed (SSE) and plain JSON replies, usage,
and HTTP errors for the retry paths. Each request takes the next scripted reply; when
the script is empty, ``default`` (a function of the request) answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted reply: text, or an HTTP error status."""

    text: str = ""
    status: int = 200
    chunk: int = 12  # characters per streamed delta
    delay: float = 0.0  # seconds between deltas
    prompt_tokens: int = 120
    completion_tokens: int = 40
    cut_after: int | None = None  # close the connection after this many deltas (a reply cut off)


class LLMServer:
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.default: Callable[[dict[str, Any]], Reply] = lambda request: Reply("DONE: nothing scripted")
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    reply = server.script.popleft() if server.script else None
                if reply is None:
                    reply = server.default(body)
                if reply.status != 200:
                    self._json(
                        reply.status,
                        {
                            "error": {
                                "message": f"scripted {reply.status}",
                                "type": "server_error",
                                "code": reply.status,
                            }
                        },
                    )
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._json(
                        200,
                        {
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body.get("model", "test"),
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": reply.text},
                                }
                            ],
                            "usage": _usage(reply),
                        },
                    )

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                base = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body.get("model", "test"),
                }

                def send(payload: dict[str, Any] | str) -> None:
                    text = payload if isinstance(payload, str) else json.dumps(payload)
                    self.wfile.write(f"data: {text}\n\n".encode())
                    self.wfile.flush()

                try:
                    send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
                    for index, start in enumerate(range(0, len(reply.text), reply.chunk)):
                        if index == reply.cut_after:
                            self.close_connection = True
                            return  # no finish_reason, no [DONE]: the reply is cut off
                        piece = reply.text[start : start + reply.chunk]
                        send({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
                        if reply.delay:
                            time.sleep(reply.delay)
                    send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    if (body.get("stream_options") or {}).get("include_usage"):
                        send({**base, "choices": [], "usage": _usage(reply)})
                    send("[DONE]")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a stop during streaming)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LLMServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.requests.clear()
            self.headers.clear()
        self.default = lambda request: Reply("DONE: nothing scripted")

    def add(self, *replies: Reply | str) -> None:
        with self._lock:
            self.script.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def answer(hypothesis: str, code: str) -> str:
    """A well-formed model answer."""
    return f"Hypothesis: {hypothesis}\n\n```python\n{code.rstrip()}\n```\n"


if __name__ == "__main__":  # a standalone server, for the browser tests and manual runs
    import sys

    srv = LLMServer().start()
    print(srv.url, flush=True)
    try:
        threading.Event().wait(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
    finally:
        srv.close()
