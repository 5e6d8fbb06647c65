"""A private, throwaway Alertmanager for the tests, and a webhook receiver for its notifications.

Usage::

    require_alertmanager()
    with AlertmanagerServer() as am:
        ...  # POST to f"{am.url}/api/v2/alerts"; read back with await am.alerts()
        note = await am.webhook.wait_for(lambda n: n["status"] == "resolved")

The server runs Debian's ``prometheus-alertmanager`` from a fresh directory under ``/tmp`` (its
config and ``--storage.path``), listens on a free port of 127.0.0.1 only, with the gossip cluster
off (``--cluster.listen-address=``: nothing else binds), and routes every alert, grouped by
``alert_key``, to a webhook of ours with short group timers, so a test sees Alertmanager's own
notifications (firing, then resolved) within seconds. Alertmanager runs fine as root.

The receiver is a stdlib HTTP server on a thread, not an aiohttp app: it must outlive each test's
event loop (pytest-asyncio gives every test its own), and the server is shared by a module.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tablewatch.pgcluster import free_port

__all__ = [
    "BINARY",
    "RESOLVE_TIMEOUT",
    "AlertmanagerServer",
    "WebhookReceiver",
    "available",
    "require_alertmanager",
]

#: Where Debian's prometheus-alertmanager package installs the server.
BINARY = Path("/usr/bin/prometheus-alertmanager")
INSTALL_HINT = "apt-get install prometheus-alertmanager"
#: An alert not re-sent within this is resolved by Alertmanager itself.
RESOLVE_TIMEOUT = "5m"

_CONFIG = """\
global:
  resolve_timeout: {resolve_timeout}
route:
  receiver: tablewatch-tests
  group_by: [alert_key]  # one group, hence one notification stream, per alert
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: tablewatch-tests
    webhook_configs:
      - url: {webhook}
        send_resolved: true
"""


def available(binary: Path = BINARY) -> str | None:
    """None when an Alertmanager can be started here, else what is missing and how to get it."""
    if not os.access(binary, os.X_OK):
        return f"Alertmanager not found ({binary}): {INSTALL_HINT}"
    return None


def require_alertmanager() -> None:
    """Skip the test without Alertmanager, except under CI (``CI`` set), where that is a
    failure: CI must never go green by skipping the real thing."""
    reason = available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Alertmanager required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


class WebhookReceiver:
    """Records the JSON body of every POST (Alertmanager's webhook notifications)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size)
                with receiver._lock:
                    receiver._received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output for the tests

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="alertmanager-webhook", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Where Alertmanager posts its notifications."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification received so far, oldest first."""
        with self._lock:
            return list(self._received)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], seconds: float = 15.0
    ) -> dict[str, Any]:
        """The first notification matching `predicate`, polled for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            for note in self.notifications():
                if predicate(note):
                    return note
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no matching webhook notification within {seconds}s; got "
                    f"{json.dumps(self.notifications())[:2000]}"
                )
            await asyncio.sleep(0.1)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class AlertmanagerServer:
    """A private Alertmanager in its own temporary directory, notifying a `WebhookReceiver`."""

    host = "127.0.0.1"

    def __init__(self, *, binary: Path = BINARY, start_timeout: float = 20.0) -> None:
        self.binary = binary
        self.start_timeout = start_timeout
        self.port = 0
        self.base: Path | None = None
        self.webhook: WebhookReceiver | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL (what `[alerts.alertmanager] url` names)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_dir(self) -> Path:
        """The temporary directory (config, storage, log)."""
        if self.base is None:
            raise RuntimeError("Alertmanager not started")
        return self.base

    @property
    def log_path(self) -> Path:
        """Alertmanager's own output (stdout and stderr)."""
        return self.base_dir / "alertmanager.log"

    def start(self) -> AlertmanagerServer:
        """Write the config, start the server and wait until `/-/ready` answers; returns self.

        Raises RuntimeError with the server's output when it does not come up (the directory
        is removed then).
        """
        if self.base is not None:
            raise RuntimeError("Alertmanager already started")
        reason = available(self.binary)
        if reason is not None:
            raise RuntimeError(reason)
        self.base = Path(tempfile.mkdtemp(prefix="tablewatch-am-", dir="/tmp"))
        atexit.register(self.stop)
        try:
            self.webhook = WebhookReceiver()
            config = self.base / "alertmanager.yml"
            config.write_text(
                _CONFIG.format(resolve_timeout=RESOLVE_TIMEOUT, webhook=self.webhook.url),
                encoding="utf-8",
            )
            for attempt in range(3):
                try:
                    self._launch(config)
                    break
                except RuntimeError as exc:
                    # Another process may have taken the port between probe and bind: retry.
                    if "address already in use" not in str(exc) or attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and the receiver; remove the directory.

        Safe to call more than once and on a server that failed to start.
        """
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self.webhook is not None:
            self.webhook.close()
            self.webhook = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            atexit.unregister(self.stop)

    def __enter__(self) -> AlertmanagerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<AlertmanagerServer {state} {self.url} base={self.base}>"

    async def alerts(self, **params: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts with these query parameters (`filter='alert_key="k"'`, ...)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v2/alerts", params=params) as response,
        ):
            response.raise_for_status()
            found: list[dict[str, Any]] = await response.json()
            return found

    def _launch(self, config: Path) -> None:
        self.port = free_port(self.host)
        argv = [
            str(self.binary),
            f"--config.file={config}",
            f"--storage.path={self.base_dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, cwd=self.base_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + self.start_timeout
        while not self._ready():
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None
                output = self.log_path.read_text(encoding="utf-8", errors="replace")
                raise RuntimeError(
                    f"Alertmanager did not become ready on {self.url} (exit {code}):\n"
                    f"{output[-3000:]}"
                )
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
