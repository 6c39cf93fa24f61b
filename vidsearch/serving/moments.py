"""Moments: the hits of one video that touch or overlap, merged into one span.

An action that spans three 10-s windows should come back as one 30-s moment, not three rows. A
moment runs from its first clip's start to its last clip's end, scores as its best clip, names that
clip as `clip_id`, and lists every clip it came from in `clip_ids` (in time order). Merging works on
one page of hits: clips on other pages are not looked up.
"""

from collections.abc import Sequence

from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb

TOUCH_S = 1e-6  # clips whose gap is below this touch (float noise of start/end times)


def _moment(run: list[pb.Hit]) -> pb.Hit:
    best = max(run, key=lambda hit: hit.score)
    tags = sorted({tag for hit in run for tag in hit.tags})
    return pb.Hit(clip_id=best.clip_id, video_id=best.video_id, uri=best.uri, start_s=run[0].start_s,
                  end_s=max(hit.end_s for hit in run), score=best.score, tags=tags,
                  clip_ids=[hit.clip_id for hit in run])


def merge(hits: Sequence[pb.Hit]) -> list[pb.Hit]:
    """The hits as moments, best first (ties: earlier first)."""
    by_video: dict[str, list[pb.Hit]] = {}
    for hit in hits:
        by_video.setdefault(hit.video_id, []).append(hit)
    moments = []
    for video_hits in by_video.values():
        video_hits.sort(key=lambda hit: (hit.start_s, hit.end_s))
        run = [video_hits[0]]
        end = video_hits[0].end_s
        for hit in video_hits[1:]:
            if hit.start_s <= end + TOUCH_S:
                run.append(hit)
                end = max(end, hit.end_s)
            else:
                moments.append(_moment(run))
                run, end = [hit], hit.end_s
        moments.append(_moment(run))
    moments.sort(key=lambda moment: (-moment.score, moment.video_id, moment.start_s))
    return moments


def merge_response(response: pb.SearchResponse) -> None:
    """Merge the response's hits, and each group's, in place."""
    merged = merge(response.hits)
    del response.hits[:]
    response.hits.extend(merged)
    for group in response.groups:
        merged = merge(group.hits)
        del group.hits[:]
        group.hits.extend(merged)
