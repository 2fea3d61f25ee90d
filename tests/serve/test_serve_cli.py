"""`psrq serve --workers N`: the shared listening socket switches Nagle's algorithm off."""

from __future__ import annotations

import socket

import pytest

uvicorn = pytest.importorskip("uvicorn")


def test_worker_socket_hands_tcp_nodelay_to_accepted_connections():
    from psrq.serve.cli import listening_socket

    config = uvicorn.Config("psrq.serve.app:create_app_from_env", host="127.0.0.1", port=0)
    server = listening_socket(config)
    try:
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server.listen()  # as asyncio's create_server does in each worker
        client = socket.create_connection(server.getsockname()[:2], timeout=5)
        accepted, _ = server.accept()
        try:
            # What the workers' asyncio transports get: without it every 2-piece response waits
            # for the client's delayed ACK (~40 ms on Linux loopback).
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            accepted.close()
            client.close()
    finally:
        server.close()


def test_uvicorn_alone_binds_without_tcp_nodelay():
    """Why listening_socket exists: if uvicorn starts setting it, this fails and the workaround
    can go."""
    config = uvicorn.Config("psrq.serve.app:create_app_from_env", host="127.0.0.1", port=0)
    server = config.bind_socket()
    try:
        assert not server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.close()
