"""The east-west REST client: peer messages out, and requests forwarded to the leader.

Both go over a `PeerHttp` (`cluster.transport`); a daemon shares one between
them. `PeerClient` sends the core's peer messages in their REST form
(`core.wire`) with the controllers' bearer token: a vPort sync is a PUT
whose answer is the peer's sync complete (200) or refusal (409); port-event
syncs travel batched. `Forwarder` relays a VMM's request from a follower to
the leader, untouched, and hands the leader's answer back.

Anything that is not an answer (no connection, a timeout, a 5xx, a 4xx
refusal of our own request) raises `PeerUnreachable`: to the protocol the
message did not get through, and the coordinator's deadlines take it from
there. A vPort sync (a PUT) that met a dying kept-alive connection is sent
again once; a batch of port events (a POST) is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

from vportd.api.service import Peer
from vportd.cluster.transport import NoAnswer, PeerHttp, Reply
from vportd.core.errors import CoreError
from vportd.core.messages import PortEventSync, SyncComplete, SyncRefused, VPortSync
from vportd.core.wire import RestAnswer, answer_from_rest, to_rest

HTTP_OK = 200
HTTP_NO_CONTENT = 204
HTTP_CONFLICT = 409
HTTP_BAD_REQUEST = 400
HTTP_SERVER_ERROR = 500
# Under the API's default max_body (1 MiB) with room to spare: a 10,000-port
# boot storm then travels in a handful of requests, none of them refused as too large.
MAX_BATCH_BYTES = 512 * 1024


class PeerUnreachable(Exception):
    """The peer did not take the message: no connection, timeout, 5xx or refusal.

    `peer` names it (its id, or the base URL for a forwarded request).
    """

    def __init__(self, peer: str, reason: str) -> None:
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason


class PeerRejected(PeerUnreachable):
    """The peer answered, but refused the request itself (a 4xx: token, body)."""

    def __init__(self, peer: str, status: int, reason: str) -> None:
        super().__init__(peer, f"HTTP {status}: {reason}")
        self.status = status


def _text(reply: Reply) -> str:
    return reply.body[:200].decode("utf-8", "replace")


def _detail(reply: Reply) -> str:
    try:
        body = json.loads(reply.body)
    except ValueError:
        return _text(reply)
    if isinstance(body, dict) and "detail" in body:
        return f"{body.get('error', 'error')}: {body['detail']}"
    return _text(reply)


class PeerClient:
    """Sends peer messages to other controllers (claim 7), with the peer token."""

    def __init__(
        self,
        peer_token: str | None,
        *,
        timeout: float = 5.0,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        http: PeerHttp | None = None,
    ) -> None:
        self._headers = {} if peer_token is None else {"Authorization": f"Bearer {peer_token}"}
        self._max_batch_bytes = max_batch_bytes
        self._timeout = timeout
        self._http = http or PeerHttp(timeout=timeout)

    async def sync(self, peer: Peer, msg: VPortSync) -> SyncComplete | SyncRefused | None:
        """The leader's vPort sync; the peer's answer, or None when none was asked for."""
        call = to_rest(msg)
        reply = await self._send(peer, call.method, call.path, json.dumps(call.body).encode())
        if reply.status == HTTP_NO_CONTENT:
            return None
        if reply.status not in (HTTP_OK, HTTP_CONFLICT):
            raise PeerRejected(peer.id, reply.status, _detail(reply))
        try:
            body = json.loads(reply.body)
            if not isinstance(body, dict) or "status" not in body:
                raise ValueError("not a sync answer")
            return answer_from_rest(RestAnswer(reply.status, body))
        except (ValueError, CoreError) as err:
            raise PeerRejected(peer.id, reply.status, f"unreadable answer: {err}") from None

    async def port_events(self, peer: Peer, msgs: Sequence[PortEventSync]) -> None:
        """Port add/modify/delete syncs, in order, batched (claims 2, 3, 5)."""
        for body in _batches(msgs, self._max_batch_bytes):
            reply = await self._send(peer, "POST", "/v1/peer/port-events", body)
            if reply.status != HTTP_NO_CONTENT:
                raise PeerRejected(peer.id, reply.status, _detail(reply))

    async def _send(self, peer: Peer, method: str, path: str, body: bytes) -> Reply:
        headers = {**self._headers, "Content-Type": "application/json"}
        url = peer.api.rstrip("/") + path
        try:
            reply = await self._http.request(method, url, body, headers, timeout=self._timeout)
        except NoAnswer as err:
            raise PeerUnreachable(peer.id, str(err)) from None
        if reply.status >= HTTP_SERVER_ERROR:
            raise PeerUnreachable(peer.id, f"HTTP {reply.status}: {_detail(reply)}")
        return reply

    async def aclose(self) -> None:
        """Closes its `PeerHttp`, shared or not (closing one twice is harmless)."""
        await self._http.aclose()


def _batches(msgs: Sequence[PortEventSync], limit: int) -> Iterator[bytes]:
    """`{"events": [...]}` bodies of at most `limit` bytes (one event may exceed it alone)."""
    chunk: list[bytes] = []
    size = 0
    for msg in msgs:
        event = json.dumps(to_rest(msg).body).encode()
        if chunk and size + len(event) + 1 > limit:
            yield _batch_body(chunk)
            chunk, size = [], 0
        chunk.append(event)
        size += len(event) + 1
    if chunk:
        yield _batch_body(chunk)


def _batch_body(events: list[bytes]) -> bytes:
    return b'{"events":[' + b",".join(events) + b"]}"


class Forwarder:
    """Relays a request to another controller (the leader) and returns its answer as is."""

    def __init__(self, *, timeout: float = 30.0, http: PeerHttp | None = None) -> None:
        self._timeout = timeout
        self._http = http or PeerHttp(timeout=timeout)

    async def forward(
        self, base_url: str, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        """Any HTTP answer is relayed; only no answer at all raises PeerUnreachable."""
        url = base_url.rstrip("/") + path
        try:
            return await self._http.request(method, url, body, headers, timeout=self._timeout)
        except NoAnswer as err:
            raise PeerUnreachable(base_url, str(err)) from None

    async def aclose(self) -> None:
        await self._http.aclose()
