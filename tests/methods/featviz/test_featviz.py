"""Feature visualization: planted unit, parameterisation round trips, diversity, traces, seeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainlab.methods.featviz import (
    ImageParam,
    channel,
    correlate,
    decorrelate,
    diversity,
    gram_cosines,
    logit,
    robustness_transforms,
    total_variation,
    visualize,
)


def test_maximizing_a_linear_unit_under_an_l2_bound_recovers_its_weights() -> None:
    torch.manual_seed(0)
    unit = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    weight = unit[1].weight.detach().view(1, 1, 8, 8)
    # Stationary point of w·x − l2·mean((x − 0.5)²): x − 0.5 = 32 w / l2, inside the clamp range.
    result = visualize(unit, logit(0), shape=(1, 1, 8, 8), param="pixel", squash="clamp", l2=200.0, steps=400,
                       lr=0.01, device="cpu")  # fmt: skip
    centred = (result.images - 0.5).flatten()
    cos = torch.nn.functional.cosine_similarity(centred, weight.flatten(), dim=0)
    assert cos > 0.99
    assert torch.allclose(centred, 32 * weight.flatten() / 200.0, atol=0.01)


def test_fourier_parameterisation_round_trips_and_decorrelation_inverts() -> None:
    image = torch.rand(2, 3, 16, 12)
    param = ImageParam(2, 3, 16, 12, param="fourier", decorrelate=False)
    param.set_image(image)
    assert torch.allclose(param.raw(), image, atol=1e-5)
    assert torch.allclose(correlate(decorrelate(image)), image, atol=1e-5)
    pixel = ImageParam(1, 3, 8, 8, param="pixel", squash="clamp", decorrelate=False)
    assert pixel().min() >= 0 and pixel().max() <= 1
    with pytest.raises(ValueError, match="3-channel"):
        ImageParam(1, 1, 8, 8, decorrelate=True)


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))  # fmt: skip


def test_diversity_lowers_the_gram_similarity_of_a_batch() -> None:
    net = _conv_net()
    kwargs = dict(shape=(4, 3, 16, 16), steps=60, lr=0.05, device="cpu")
    plain = visualize(net, channel("2", 0), **kwargs)
    diverse = visualize(net, channel("2", 0) + 5.0 * diversity("0"), **kwargs)

    def mean_cos(images: torch.Tensor) -> float:
        with torch.no_grad():
            cos = gram_cosines(net[0](images))
        return float((cos.sum() - cos.diagonal().sum()) / 12)

    assert mean_cos(diverse.images) < mean_cos(plain.images)


def test_traces_rise_and_seeds_repeat() -> None:
    net = _conv_net()
    transforms = robustness_transforms(pad=2, jitter=2, scales=(1.0, 0.95, 1.05), degrees=5, jitter2=1)
    first = visualize(net, channel("2", 1), shape=(2, 3, 16, 16), steps=40, transforms=transforms, tv=0.1, l1=0.01,
                      seed=3, device="cpu")  # fmt: skip
    again = visualize(net, channel("2", 1), shape=(2, 3, 16, 16), steps=40, transforms=transforms, tv=0.1, l1=0.01,
                      seed=3, device="cpu")  # fmt: skip
    assert sum(first.trace[-5:]) > sum(first.trace[:5])
    assert torch.equal(first.images, again.images)
    blurred = visualize(net, channel("2", 1), shape=(1, 3, 16, 16), param="pixel", steps=8, blur_every=2,
                        device="cpu")  # fmt: skip
    assert torch.isfinite(blurred.images).all()
    assert total_variation(torch.zeros(1, 1, 4, 4)).item() == 0
