"""Which packets to decode for a set of clips, decided from the timeline before decoding.

A wanted frame needs its group of pictures (GOP) decoded from the keyframe up to that frame; any GOP
holding no wanted frame is skipped without decoding, and a GOP is left as soon as its wanted frames
are out. Where a GOP is open (frames shown before its keyframe refer to the GOP before), that earlier
GOP is decoded in full as well, so no frame is ever decoded from missing references.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import VideoDecodeError
from vidsearch.video.clips import Clip
from vidsearch.video.sampling import SamplingRule, sample_timestamps
from vidsearch.video.timeline import Timeline, frame_numbers


@dataclass(frozen=True)
class ClipRequest:
    """One clip's sampled times and the presentation timestamps (stream ticks) of their frames."""

    clip: Clip
    times_s: tuple[float, ...]
    pts: tuple[int, ...]


@dataclass(frozen=True)
class DecodePlan:
    requests: tuple[ClipRequest, ...]
    slots: dict[int, list[tuple[int, int]]]  # wanted pts → (request number, slot) pairs
    gop: NDArray[np.int64]  # packet (decode order) → GOP id
    gop_of_pts: dict[int, int]  # wanted pts → its GOP
    packet_of_pts: dict[int, int]  # wanted pts → its packet (decode order)
    decode_gops: frozenset[int]
    full_gops: frozenset[int]  # decoded to the end, for the open GOP after them


def _open_gops(timeline: Timeline, gops: set[int]) -> set[int]:
    """Those of `gops` that show frames before their keyframe (open GOPs)."""
    bounds = [*np.flatnonzero(timeline.keyframe).tolist(), timeline.frame_count]
    return {
        g
        for g in gops
        if g >= 0 and int(timeline.pts[bounds[g] : bounds[g + 1]].min()) < int(timeline.pts[bounds[g]])
    }


def clip_frames(
    timeline: Timeline, clips: Sequence[Clip], rule: SamplingRule
) -> list[tuple[list[float], list[int]]]:
    """For each clip, its sampled times and the frame numbers (presentation order) that show them:
    the sampling rule and the frame-choice rule applied together, for every decoder alike."""
    times = timeline.times_s()
    fps = timeline.average_fps()
    chosen = []
    for clip in clips:
        stamps = sample_timestamps(clip, rule, fps)
        chosen.append((stamps, frame_numbers(times, stamps)))
    return chosen


def make_plan(timeline: Timeline, clips: Sequence[Clip], rule: SamplingRule) -> DecodePlan:
    """The decode plan for `clips` of the video `timeline` describes, sampled by `rule`."""
    return plan_frames(timeline, clips, clip_frames(timeline, clips, rule))


def given_frames(timeline: Timeline, numbers: Sequence[Sequence[int]], name: str
                 ) -> tuple[list[Clip], list[tuple[list[float], list[int]]]]:
    """Clips and their chosen frames from frame numbers computed elsewhere (a client's
    `clip_frames`), each checked against the timeline: a clip spans its first to its last frame."""
    times = timeline.times_s()
    clips, chosen = [], []
    for index, wanted in enumerate(numbers):
        frames = [int(f) for f in wanted]
        if not frames:
            raise VideoDecodeError(name, f"clip {index}: no frame numbers")
        outside = [f for f in frames if not 0 <= f < timeline.frame_count]
        if outside:
            raise VideoDecodeError(name, f"clip {index}: frame {outside[0]} is past the end (the video has "
                                         f"{timeline.frame_count} frames, numbered from 0)")
        stamps = [float(times[f]) for f in frames]
        clips.append(Clip(index, min(stamps), max(stamps)))
        chosen.append((stamps, frames))
    return clips, chosen


def plan_frames(timeline: Timeline, clips: Sequence[Clip],
                chosen: Sequence[tuple[Sequence[float], Sequence[int]]]) -> DecodePlan:
    """The decode plan for frames chosen already (`clip_frames`' output, or frame numbers a client
    computed with it): per clip, its sampled times and frame numbers in presentation order."""
    order = timeline.presentation_order()
    gop = timeline.gop_ids()
    requests = []
    slots: dict[int, list[tuple[int, int]]] = defaultdict(list)
    gop_of_pts: dict[int, int] = {}
    packet_of_pts: dict[int, int] = {}
    for number, (clip, (stamps, numbers)) in enumerate(zip(clips, chosen, strict=True)):
        packets = [int(order[f]) for f in numbers]
        pts = tuple(int(timeline.pts[p]) for p in packets)
        requests.append(ClipRequest(clip, tuple(stamps), pts))
        for slot, (packet, stamp) in enumerate(zip(packets, pts, strict=True)):
            slots[stamp].append((number, slot))
            gop_of_pts[stamp] = int(gop[packet])
            packet_of_pts[stamp] = packet
    needed = set(gop_of_pts.values())
    full = {g - 1 for g in _open_gops(timeline, needed)}
    return DecodePlan(
        requests=tuple(requests),
        slots=dict(slots),
        gop=gop,
        gop_of_pts=gop_of_pts,
        packet_of_pts=packet_of_pts,
        decode_gops=frozenset(needed | full),
        full_gops=frozenset(full),
    )
