"""Merging hits into moments: touching or overlapping clips of one video merge, anything else stays apart."""

import pytest

from vidsearch.serving.moments import merge, merge_response
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb


def _hit(video: str, number: int, start: float, end: float, score: float, *tags: str) -> pb.Hit:
    return pb.Hit(clip_id=f"{video}#{number:05d}", video_id=video, uri=f"file:///{video}", start_s=start,
                  end_s=end, score=score, tags=list(tags))


def test_an_action_over_three_windows_is_one_moment_with_the_best_score() -> None:
    hits = [_hit("a", 1, 10, 20, 0.9, "x"), _hit("a", 0, 0, 10, 0.5), _hit("a", 2, 20, 30, 0.7, "y")]
    [moment] = merge(hits)
    assert (moment.start_s, moment.end_s, moment.score) == (0, 30, pytest.approx(0.9))
    assert (moment.clip_id, list(moment.clip_ids)) == ("a#00001", ["a#00000", "a#00001", "a#00002"])
    assert list(moment.tags) == ["x", "y"]


def test_gaps_and_other_videos_stay_apart_and_moments_come_best_first() -> None:
    hits = [_hit("a", 0, 0, 10, 0.4), _hit("a", 3, 30, 40, 0.8), _hit("b", 1, 10, 20, 0.6),
            _hit("b", 2, 15, 25, 0.3)]  # b's windows overlap (a stride shorter than the window)
    moments = merge(hits)
    assert [(m.video_id, m.start_s, m.end_s, len(m.clip_ids)) for m in moments] == [
        ("a", 30, 40, 1), ("b", 10, 25, 2), ("a", 0, 10, 1)]


def test_groups_are_merged_each_on_its_own() -> None:
    response = pb.SearchResponse(groups=[pb.VideoGroup(video_id="a", hits=[_hit("a", 1, 10, 20, 0.5),
                                                                          _hit("a", 0, 0, 10, 0.6)])])
    merge_response(response)
    assert [(h.start_s, h.end_s, h.score) for h in response.groups[0].hits] == [(0, 20, pytest.approx(0.6))]
    assert merge([]) == []
