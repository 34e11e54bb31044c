"""Only the leader coordinates migrations: a follower relays those requests to it.

A request for the leader (a notify, an abort, a migration read) is handled
here when this controller leads, and otherwise relayed once, untouched, with
the caller's Authorization header, its status, body, Location and Retry-After
handed back.
A relayed request carries `X-Vportd-Forwarded-By`; a controller that gets
one and does not lead answers 503 rather than relaying it again, so that two
controllers that disagree on who leads never bounce a request between them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from vportd.api.errors import ApiError
from vportd.api.service import Service
from vportd.cluster.members import Peer
from vportd.cluster.peers import Forwarder, PeerUnreachable
from vportd.core.errors import NotLeader

FORWARDED_BY = "X-Vportd-Forwarded-By"
ANSWERED_BY = "X-Vportd-Answered-By"
HTTP_UNAVAILABLE = 503
# What the leader needs of the caller's request; hop-by-hop and host headers stay here.
_RELAYED = ("authorization", "content-type", "accept", "x-request-id")


class LeaderOnly:
    def __init__(self, service: Service, forwarder: Forwarder) -> None:
        self.service = service
        self.forwarder = forwarder

    async def run(self, request: Request, local: Callable[[], Awaitable[Response]]) -> Response:
        """`local()` on the leader; on a follower, the leader's answer to the same request."""
        leader = self._leader()
        if leader.id != self.service.me.id:
            return await self._relay(request, leader)
        try:
            return await local()
        except NotLeader:
            # Leadership moved while the request ran: relay it once to the new leader.
            leader = self._leader()
            if leader.id == self.service.me.id:
                raise
            return await self._relay(request, leader)

    def _leader(self) -> Peer:
        leader = self.service.leader()
        if leader is None:
            raise ApiError(
                HTTP_UNAVAILABLE, "no-leader", "the cluster has no leader at the moment; retry"
            )
        return leader

    async def _relay(self, request: Request, leader: Peer) -> Response:
        me = self.service.me.id
        by = request.headers.get(FORWARDED_BY)
        if by is not None:
            raise ApiError(
                HTTP_UNAVAILABLE, "not-leader",
                f"{me} does not lead (it believes {leader.id} does) and does not relay "
                f"a request {by} relayed already",
            )  # fmt: skip
        headers = {name: value for name in _RELAYED if (value := request.headers.get(name))}
        headers[FORWARDED_BY] = me
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = await request.body()
        try:
            reply = await self.forwarder.forward(leader.api, request.method, path, body, headers)
        except PeerUnreachable as err:
            raise ApiError(
                HTTP_UNAVAILABLE, "leader-unreachable",
                f"the leader {leader.id} ({leader.api}) did not answer: {err.reason}",
            ) from None  # fmt: skip
        answer = {**dict(reply.headers), "content-type": reply.content_type, ANSWERED_BY: leader.id}
        return Response(reply.body, reply.status, headers=answer)
