"""A real Prometheus 2.42 evaluating the shipped alert rules and a real Alertmanager 0.25 notifying a webhook
in the test: the end of every chain test. Needs apt: prometheus prometheus-alertmanager (.ci/run)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import toolchain
from test_export_support import free_port, wait_for

ROOT = Path(__file__).parents[2]
RULES = ROOT / "config" / "alerts" / "leakproc-rules.yml"


@dataclass
class AlertingStack:
    workdir: Path
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for n in self.notifications for a in n["alerts"] if a["labels"]["alertname"] == name]

    def wait_for_alert(self, name: str, timeout: float = 90) -> dict[str, Any]:
        """The first notification of alert `name` at the webhook (logs printed when it never comes)."""
        try:
            wait_for(lambda: bool(self.alerts(name)), timeout=timeout, what=f"{name} at the webhook")
        except AssertionError:
            for log in ("prometheus.log", "am.log"):
                print((self.workdir / log).read_text()[-3000:])
            raise
        return self.alerts(name)[0]


@contextmanager
def alerting_stack(workdir: Path, scrape_port: int) -> Iterator[AlertingStack]:
    """Prometheus scraping 127.0.0.1:`scrape_port` every second with the shipped rules, Alertmanager
    grouping for one second, and a webhook receiver recording every notification."""
    prometheus, alertmanager = toolchain.tool("prometheus"), toolchain.tool("alertmanager")
    stack = AlertingStack(workdir)

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            stack.notifications.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    webhook = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    am_port, prom_port = free_port(), free_port()
    hook = {"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{webhook.server_port}/"}]}
    route = {"receiver": "hook", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    (workdir / "am.yml").write_text(json.dumps({"route": route, "receivers": [hook]}))
    scrape = {
        "job_name": "otel-leakproc",
        "honor_labels": True,
        "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}],
    }
    (workdir / "prometheus.yml").write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [scrape],
            }
        )
    )
    commands = {
        "am.log": [alertmanager, f"--config.file={workdir}/am.yml", f"--storage.path={workdir}/am",
                   f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
        "prometheus.log": [prometheus, f"--config.file={workdir}/prometheus.yml", f"--storage.tsdb.path={workdir}/tsdb",
                           f"--web.listen-address=127.0.0.1:{prom_port}"],
    }  # fmt: skip
    processes = []
    try:
        for log, args in commands.items():
            with (workdir / log).open("wb") as out:
                processes.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT))
        yield stack
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        webhook.shutdown()
        webhook.server_close()
