"""A chat-completions server on 127.0.0.1 for the tests: it answers with a deterministic transform of the text
(the paragraph after the prompt, upper-cased) and misbehaves on purpose for texts holding a marker:

- ``RATE``: the first request answers 429; ``BOOM``: the first answers 500; ``SLOW``: the first answers after
  ``slow_seconds`` (past the client's timeout); ``BAD``: every answer is malformed (no JSON);
  ``EMPTY``: a well-formed reply with an empty message; ``SORRY``: an apology.

Every request is counted per text, so a test can tell what was retried and that nothing was sent twice.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def transform(text: str) -> str:
    return text.upper()


class ChatServer:
    def __init__(self, slow_seconds: float = 2.0) -> None:
        self.slow_seconds = slow_seconds
        self.requests: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        content = body["messages"][-1]["content"]
        text = content.split("\n\n", 1)[1]
        with self.lock:
            self.requests[text] += 1
            n = self.requests[text]
        if "RATE" in text and n == 1:
            return self._send(handler, 429, {"error": {"message": "slow down", "type": "rate_limit"}})
        if "BOOM" in text and n == 1:
            return self._send(handler, 500, {"error": {"message": "internal", "type": "server_error"}})
        if "SLOW" in text and n == 1:
            time.sleep(self.slow_seconds)
        if "BAD" in text:
            return self._send_raw(handler, 200, b"{this is not json")
        reply = "" if "EMPTY" in text else "I'm sorry, I cannot fix this." if "SORRY" in text else transform(text)
        words = len(content.split())
        self._send(
            handler,
            200,
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": words, "completion_tokens": len(reply.split()), "total_tokens": 0},
            },
        )

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode())

    @staticmethod
    def _send_raw(handler: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass
