"""The east-west REST client: the leader's vPort syncs, and requests forwarded to it.

Both go over a `PeerHttp` (`cluster.transport`); a daemon shares one between
them. `PeerClient` sends a vPort sync (`cluster.codec`) with the controllers'
bearer token: a PUT whose answer is the peer's sync complete (200) or refusal
(409). `Forwarder` relays a VMM's request from a follower to the leader,
untouched, and hands the leader's answer back.

Anything that is not an answer (no connection, a timeout, a 5xx, a 4xx
refusal of our own request) raises `PeerUnreachable`: to the protocol the
message did not get through, and the coordinator's deadlines take it from
there. A vPort sync (a PUT) that met a dying kept-alive connection is sent
again once; a relayed POST is not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import ValidationError

from vportd.cluster.codec import SyncAnswerWire, SyncWire
from vportd.cluster.members import Peer
from vportd.cluster.transport import NoAnswer, PeerHttp, Reply
from vportd.core.messages import SyncAnswer, VPortSync

HTTP_OK = 200
HTTP_CONFLICT = 409
HTTP_SERVER_ERROR = 500


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
        http: PeerHttp | None = None,
    ) -> None:
        self._headers = {} if peer_token is None else {"Authorization": f"Bearer {peer_token}"}
        self._timeout = timeout
        self._http = http or PeerHttp(timeout=timeout)

    async def sync(self, peer: Peer, msg: VPortSync) -> SyncAnswer:
        """The leader's vPort sync (`PUT /v1/peer/vports/{vm}`); the peer's answer."""
        body = SyncWire.of(msg).model_dump_json(exclude_unset=True).encode()
        reply = await self._send(peer, "PUT", f"/v1/peer/vports/{msg.record.vm}", body)
        if reply.status not in (HTTP_OK, HTTP_CONFLICT):
            raise PeerRejected(peer.id, reply.status, _detail(reply))
        try:
            return SyncAnswerWire.model_validate_json(reply.body).to_core()
        except ValidationError as err:
            raise PeerRejected(peer.id, reply.status, f"unreadable answer: {err}") from None

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
