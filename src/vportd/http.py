"""HTTP client transports with TCP_NODELAY, for every httpx client vportd makes.

httpx writes a request's headers and its body in separate sends. With Nagle's
algorithm on, the body then waits for the peer to acknowledge the headers,
and the peer delays that acknowledgement (40 ms on Linux): every east-west
message, forwarded request and notify would take 40 ms more than it should.
"""

from __future__ import annotations

import socket

import httpx

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def async_transport() -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(socket_options=NODELAY)


def sync_transport() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(socket_options=NODELAY)
