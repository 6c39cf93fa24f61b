import math

import pytest
import torch
from torch import nn

from vidsearch.errors import ConfigError
from vidsearch.training.losses import clamp_temperature, contrastive_targets, video_text_contrastive_loss


def _reference(video: torch.Tensor, text: torch.Tensor, temp: float, groups: list[int]) -> float:
    """The loss written out element by element."""
    n = len(groups)
    v = [row / row.norm() for row in video]
    t = [row / row.norm() for row in text]
    total = 0.0
    for direction in (0, 1):
        for i in range(n):
            logits = [float((v[i] @ t[j]) if direction == 0 else (t[i] @ v[j])) / temp for j in range(n)]
            log_z = math.log(sum(math.exp(x) for x in logits))
            positives = [j for j in range(n) if groups[j] == groups[i]]
            total += -sum(logits[j] - log_z for j in positives) / len(positives) / n
    return total / 2


def test_contrastive_loss_matches_the_written_out_formula() -> None:
    torch.manual_seed(0)
    video, text = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    temp = torch.tensor(0.07)
    pairs = video_text_contrastive_loss(video, text, temp)
    assert float(pairs) == pytest.approx(_reference(video, text, 0.07, [0, 1, 2, 3, 4]), rel=1e-5)
    groups = torch.tensor([0, 1, 0, 2, 1])
    grouped = video_text_contrastive_loss(video, text, temp, groups)
    assert float(grouped) == pytest.approx(_reference(video, text, 0.07, [0, 1, 0, 2, 1]), rel=1e-5)
    assert float(grouped) != pytest.approx(float(pairs))


def test_matching_embeddings_give_a_small_loss_and_gradients_reach_the_temperature() -> None:
    embeddings = torch.eye(4) * 3
    temp = nn.Parameter(torch.tensor(0.05))
    loss = video_text_contrastive_loss(embeddings, embeddings, temp)
    loss.backward()
    assert float(loss.detach()) < 1e-6
    assert temp.grad is not None


def test_targets_are_row_normalised() -> None:
    targets = contrastive_targets(torch.tensor([7, 7, 3]), 3, torch.device("cpu"))
    assert torch.equal(targets, torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ConfigError, match="groups"):
        contrastive_targets(torch.tensor([1, 2]), 3, torch.device("cpu"))


def test_temperature_is_clamped_at_the_official_minimum() -> None:
    temp = nn.Parameter(torch.tensor(0.004))
    clamp_temperature(temp)
    assert float(temp.detach()) == pytest.approx(0.01)
    temp = nn.Parameter(torch.tensor(0.3))
    clamp_temperature(temp)
    assert float(temp.detach()) == pytest.approx(0.3)


def test_shapes_must_agree() -> None:
    with pytest.raises(ConfigError, match="one shape"):
        video_text_contrastive_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(0.1))
