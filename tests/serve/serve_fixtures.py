"""Starting and stopping real `psrq serve` processes on free loopback ports (for the tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ADMIN_TOKEN = "test-admin-token"
MAX_BATCH = 8
MAX_CANDIDATES = 200
MAX_BODY_MB = 2.5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kw)


def start_server(
    args: list[str], log: Path, *, token: str | None = None, timeout: float = 120.0
) -> Server:
    """`python -m psrq.cli serve ARGS --port P`; returns once /readyz answers (or raises with the log)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PSRQ_ADMIN_TOKEN"}
    env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    if token:
        env["PSRQ_ADMIN_TOKEN"] = token
    cmd = [
        sys.executable,
        "-m",
        "psrq.cli",
        "serve",
        *args,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    fh = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"psrq serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return Server(url, proc, log)
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"psrq serve did not become ready in {timeout}s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
