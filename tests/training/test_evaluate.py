import pytest
import torch

from vidsearch.errors import ConfigError
from vidsearch.training.evaluate import (
    kinetics400_classes,
    multiview_probabilities,
    ranks_of_first_match,
    retrieval_metrics,
    topk_accuracy,
    zero_shot_scores,
    zero_shot_weights,
)


def test_ranks_take_the_best_ranked_relevant_item() -> None:
    similarity = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.3, 0.1]])
    relevant = torch.tensor([[False, True, True], [True, False, False]])
    assert ranks_of_first_match(similarity, relevant).tolist() == [2, 2]
    with pytest.raises(ConfigError, match="relevant"):
        ranks_of_first_match(similarity, torch.zeros(2, 3, dtype=torch.bool))


def test_retrieval_metrics_on_hand_built_embeddings() -> None:
    # captions 0, 1, 2 are the unit axes; videos 0 and 1 carry caption 0, video 2 caption 1, video 3 caption 2
    text = torch.eye(3)
    video = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.2, 1.0], [0.0, 1.0, 0.3]])
    metrics = retrieval_metrics(video, text, [0, 0, 1, 2])
    # text→video: caption 0 finds video 0 first; caption 1's best is video 3 (wrong), video 2 second;
    # caption 2's best is video 2 (wrong), video 3 second.
    assert metrics.t2v_r1 == pytest.approx(1 / 3)
    assert metrics.t2v_r5 == 1.0
    assert metrics.t2v_median_rank == 2.0
    # video→text: videos 0, 1 right; video 2 picks caption 2 (wrong, rank 2); video 3 caption 1 (rank 2)
    assert metrics.v2t_r1 == 0.5
    assert metrics.v2t_median_rank in (1.0, 2.0)
    assert (metrics.queries, metrics.gallery) == (3, 4)


def test_topk_and_multiview() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert topk_accuracy(scores, torch.tensor([1, 2]), ks=(1, 2)) == {"top1": 0.5, "top2": 1.0}
    logits = torch.tensor([[[10.0, 0.0], [0.0, 10.0], [0.0, 10.0]]])
    probabilities = multiview_probabilities(logits)
    assert probabilities.shape == (1, 2)
    assert float(probabilities[0, 1]) == pytest.approx(2 / 3, abs=1e-3)
    with pytest.raises(ConfigError, match="views"):
        multiview_probabilities(torch.zeros(2, 3))


def test_zero_shot_averages_prompt_embeddings_per_class() -> None:
    vocab = {
        "a video of cat.": [1.0, 0.0],
        "cat": [1.0, 0.2],
        "a video of dog.": [0.0, 1.0],
        "dog": [0.2, 1.0],
    }

    def encode(texts: list[str]) -> torch.Tensor:
        return torch.tensor([vocab[t] for t in texts])

    weights = zero_shot_weights(encode, ["cat", "dog"], templates=("a video of {}.", "{}"))
    assert weights.shape == (2, 2)
    assert torch.allclose(weights.norm(dim=1), torch.ones(2))
    scores = zero_shot_scores(torch.tensor([[0.9, 0.1], [0.1, 0.8]]), weights)
    assert scores.argmax(dim=1).tolist() == [0, 1]
    assert float(scores.max()) <= 100.0


def test_kinetics_class_list() -> None:
    classes = kinetics400_classes()
    assert len(classes) == len(set(classes)) == 400
    assert (classes[0], classes[-1]) == ("abseiling", "zumba")
    assert "passing American football (in game)" in classes
