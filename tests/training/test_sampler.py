import pytest

from vidsearch.errors import ConfigError
from vidsearch.training.sampler import ResumableBatchSampler, Shard


def test_batches_cover_each_epoch_once_and_epochs_differ() -> None:
    batches = list(ResumableBatchSampler(10, 4, total_steps=4, seed=1))
    assert [len(b) for b in batches] == [4, 4, 4, 4]
    first_epoch, second_epoch = batches[0] + batches[1], batches[2] + batches[3]
    assert len(set(first_epoch)) == 8  # two batches per epoch, the tail of 2 dropped
    assert first_epoch != second_epoch


def test_starting_mid_run_gives_the_same_batches_as_running_through() -> None:
    full = list(ResumableBatchSampler(10, 4, total_steps=7, seed=3))
    assert list(ResumableBatchSampler(10, 4, total_steps=7, seed=3, start_step=3)) == full[3:]
    assert len(ResumableBatchSampler(10, 4, total_steps=7, seed=3, start_step=3)) == 4


def test_process_shards_split_each_global_batch() -> None:
    whole = list(ResumableBatchSampler(12, 6, total_steps=3, seed=0))
    halves = [list(ResumableBatchSampler(12, 6, total_steps=3, seed=0, shard=Shard(r, 2))) for r in range(2)]
    for step, batch in enumerate(whole):
        assert halves[0][step] + halves[1][step] == batch


def test_impossible_batches_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        ResumableBatchSampler(12, 5, 1, 0, Shard(0, 2))
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ResumableBatchSampler(3, 4, 1, 0)
