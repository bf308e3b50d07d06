"""A demo HTTP receiver for `orchestrator adapter webhook` in the compose stack (stdlib only).

It stands in for an email or SMS provider: every POST is an action (docs/events.md#actions) delivered by the
adapter. It answers 200, logs one line per delivery (channel, template, action id; never the
customer id or the params) and counts deliveries, so the de-duplication of the adapter shows:
``GET /`` returns ``{"deliveries": N, "distinct_action_ids": M, "duplicates": N - M}``.

    python receiver.py [--host 0.0.0.0] [--port 8080]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Deliveries:
    """Delivery counts, shared by the server's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.action_ids: set[str] = set()

    def add(self, action_id: str) -> None:
        with self.lock:
            self.total += 1
            self.action_ids.add(action_id)

    def summary(self) -> dict[str, int]:
        with self.lock:
            return {"deliveries": self.total, "distinct_action_ids": len(self.action_ids),
                    "duplicates": self.total - len(self.action_ids)}


def handler(deliveries: Deliveries) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._reply(200, deliveries.summary())

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            try:
                action = json.loads(self.rfile.read(length) or b"null")
                action_id = action["action_id"]
            except (ValueError, TypeError, KeyError):
                self._reply(400, {"error": "expected an action: a JSON object with action_id"})
                return
            deliveries.add(str(action_id))
            print(f"delivered {action.get('channel')} {action.get('template')} {action_id} "
                  f"to {self.path}", flush=True)
            self._reply(200, {"ok": True})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass        # one line per delivery above is enough; request lines carry nothing more

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: a container)")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), handler(Deliveries()))
    print(f"webhook receiver listening on {args.host}:{args.port}", flush=True)
    # As a container's process 1, SIGTERM has no default action: stop on it as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
