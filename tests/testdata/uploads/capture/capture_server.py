"""Capture HTTP server: records every request (method, path, query, headers, body) into a folder.

Usage: python capture_server.py OUTDIR PORTFILE
Binds 127.0.0.1 on port 0, writes the chosen port to PORTFILE and answers 200 with an empty body
(`Content-Type: application/proto` on the Connect push path), the way Pyroscope answers a success.
Each request NNN becomes OUTDIR/NNN.json (method, path, query, headers) and OUTDIR/NNN.body.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

OUT = Path(sys.argv[1])
COUNTER = [0]
LOCK = threading.Lock()


class CaptureHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with LOCK:
            COUNTER[0] += 1
            n = COUNTER[0]
        parts = urlsplit(self.path)
        meta = {
            "method": self.command,
            "path": parts.path,
            "query": parse_qsl(parts.query, keep_blank_values=True),
            "headers": list(self.headers.items()),
            "body_file": f"{n:03d}.body",
            "body_len": len(body),
        }
        (OUT / f"{n:03d}.body").write_bytes(body)
        (OUT / f"{n:03d}.json").write_text(json.dumps(meta, indent=2))
        self.send_response(200)
        if parts.path.endswith("/Push"):
            self.send_header("Content-Type", "application/proto")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self._record()

    def do_PUT(self) -> None:
        self._record()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("capture: " + (format % args) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), CaptureHandler)
    Path(sys.argv[2]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
