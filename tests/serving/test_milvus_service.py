"""The search service over a Milvus collection (`--index milvus://HOST:PORT/COLLECTION`), end to end:
ingest, search, filters, delete and stats through gRPC; UNAVAILABLE while Milvus is down, and the
same server answering again once Milvus is back."""

import threading

import grpc
import pytest

from vidsearch.client import SearchClient
from vidsearch.index.milvus import LocalMilvus
from vidsearch.serving import SearchServer

from ..runtime.models import Repository
from .conftest import CLIPS_PER_VIDEO, VIDEOS, Media, settings_for

QUERY = "a red circle moves to the left"


@pytest.mark.slow
def test_the_service_answers_from_milvus_and_survives_its_restart(
    repository: Repository, media: Media, milvus_server: LocalMilvus
) -> None:
    address = milvus_server.uri.replace("http://", "milvus://") + "/served"
    settings = settings_for(repository, media, address, milvus={
        "concurrent_searches": 2, "timeout_s": 5.0, "index_type": "IVF_FLAT", "index_params": {"nlist": 8}})
    before = set(threading.enumerate())
    with SearchServer(settings) as server, SearchClient(server.address, timeout_s=60) as client:
        batchers = [t.name for t in set(threading.enumerate()) - before
                    if t.name.startswith("vidsearch-search-batcher-")]
        assert len(batchers) == 2, f"[milvus] concurrent_searches = 2 batches in flight, got {batchers}"
        outcomes = client.ingest(list(VIDEOS[:2]), tags=["news"]) + client.ingest([VIDEOS[2]], tags=["sport"])
        assert [o.clips for o in outcomes] == [CLIPS_PER_VIDEO] * 3
        result = client.search(QUERY, top_k=9)
        assert len(result.hits) == 9, "read-your-writes: every ingested clip is searchable at once"
        assert result.index_version == "served+3", "one change per video ingested"
        assert {h.video_id for h in client.search(QUERY, tags=["sport"]).hits} == {VIDEOS[2]}
        assert client.delete_video(VIDEOS[0]) == CLIPS_PER_VIDEO
        assert {h.video_id for h in client.search(QUERY, top_k=9).hits} == set(VIDEOS[1:])
        stats = client.index_stats()
        assert (stats.clips, stats.videos) == (2 * CLIPS_PER_VIDEO, 2)
        assert stats.backend.startswith("milvus ")
        assert stats.index_type == "IVF_FLAT", "the collection the server created has the configured index"

        milvus_server.stop()
        try:
            with pytest.raises(grpc.RpcError) as down:
                client.search(QUERY, timeout_s=60)
            assert down.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "cannot be reached" in str(down.value.details())
        finally:
            milvus_server.start()
        assert len(client.search(QUERY, top_k=9).hits) == 2 * CLIPS_PER_VIDEO
