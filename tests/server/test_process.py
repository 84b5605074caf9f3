"""`python -m server` as a real process: settings errors, serving, graceful SIGTERM."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import make_env

ROOT = Path(__file__).resolve().parents[2]


def _env(store_uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT", "MONGODB"))}
    settings = {"MONGODB_URI": store_uri, "MONGODB_DB": "p_" + secrets.token_hex(4), "PORT": "0",
                "WECHAT_API_BASE": "http://127.0.0.1:9", **extra}
    env.update(make_env(**settings))
    return env


def start_server(store_uri: str, **extra: str) -> tuple[subprocess.Popen[str], str]:
    # The JSON logs go to a file, never to a pipe nobody reads: a full pipe would block the
    # server mid-request once its log passes the pipe's 64 KiB.
    log_path = Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT,
                                env=_env(store_uri, **extra), stdout=subprocess.PIPE,
                                stderr=log_file, text=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://([\d.]+):(\d+)", line)
    if not match:
        proc.wait(timeout=10)
        raise AssertionError(f"server did not start: {line!r} {log_path.read_text()[-3000:]}")
    return proc, f"http://{match.group(1)}:{match.group(2)}"


def test_all_settings_problems_are_reported_at_once(store_uri: str) -> None:
    env = _env(store_uri, PORT="eighty", LOG_LEVEL="LOUD")
    env["ID_HASH_KEY"] = "not base64!"
    proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    for name in ("PORT", "LOG_LEVEL", "ID_HASH_KEY"):
        assert name in proc.stderr
    assert env["WECHAT_SECRET"] not in proc.stderr + proc.stdout


def test_sigterm_finishes_in_flight_requests_then_exits(store_uri: str) -> None:
    proc, base = start_server(store_uri)
    try:
        assert httpx.get(base + "/readyz", timeout=10).status_code == 200
        host, port = base.removeprefix("http://").split(":")
        body = b'{"username": "nobody", "password": "secret-pass"}'
        conn = socket.create_connection((host, int(port)))
        conn.sendall(b"POST /api/admin/v1/session HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "exited with a request in flight"
        try:  # no new connections are accepted any more
            httpx.get(base + "/healthz", timeout=2)
            accepted = True
        except httpx.HTTPError:
            accepted = False
        assert not accepted
        conn.sendall(body[10:])
        reply = conn.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 401"), reply
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        logs = proc.log_path.read_text()  # type: ignore[attr-defined]
    lines = [line for line in logs.splitlines() if line.startswith("{")]
    assert lines and all('"request_id"' in line for line in lines)
    assert "secret-pass" not in logs
