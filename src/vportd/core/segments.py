"""Tenant segments: a VM port's VLAN tag, and the VNI and name a segment has.

A VM port's segment is its OVS port's `tag` (0: untagged, the default
segment). On the overlay a segment travels as a VNI (`tun_id`): by default
the tag itself, or what the `[segments]` configuration maps it to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vportd.core.errors import InvalidRequest

MAX_TAG = 4095
MAX_VNI = 0xFFFFFF


@dataclass(frozen=True, slots=True)
class Segment:
    """One configured segment: its tag, VNI and (optional) name."""

    tag: int
    vni: int
    name: str | None = None


class SegmentMap:
    """Tags to VNIs and back; a tag not configured is its own VNI."""

    def __init__(self, segments: Iterable[Segment] = ()) -> None:
        self._by_tag: dict[int, Segment] = {}
        self._tags: dict[int, int] = {}  # VNI -> tag, of the configured segments
        for seg in segments:
            self._add(seg)
        for vni, tag in self._tags.items():
            if vni != tag and vni <= MAX_TAG and vni not in self._by_tag:
                raise InvalidRequest(
                    f"segment {tag}: VNI {vni} is the default VNI of tag {vni}; "
                    f"map tag {vni} to another VNI too"
                )

    def _add(self, seg: Segment) -> None:
        if not 0 <= seg.tag <= MAX_TAG or not 0 <= seg.vni <= MAX_VNI:
            raise InvalidRequest(f"segment {seg.tag}: tag or VNI {seg.vni} out of range")
        if seg.tag in self._by_tag:
            raise InvalidRequest(f"segment {seg.tag} is configured twice")
        if seg.vni in self._tags:
            raise InvalidRequest(
                f"segments {self._tags[seg.vni]} and {seg.tag} have the same VNI {seg.vni}"
            )
        self._by_tag[seg.tag] = seg
        self._tags[seg.vni] = seg.tag

    def vni(self, tag: int) -> int:
        seg = self._by_tag.get(tag)
        return tag if seg is None else seg.vni

    def tag(self, vni: int) -> int | None:
        """The segment carried as `vni`, if any."""
        tag = self._tags.get(vni)
        if tag is not None:
            return tag
        return vni if vni <= MAX_TAG and vni not in self._by_tag else None

    def name(self, tag: int) -> str | None:
        seg = self._by_tag.get(tag)
        return None if seg is None else seg.name
