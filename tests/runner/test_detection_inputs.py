"""Inputs of the detection study: pooling, shape conversion of outlier sets."""

from __future__ import annotations

import torch

from explainlab.runner.detection_inputs import as_input_shape, outlier_images, pool


def test_pool_takes_channel_means_and_keeps_vectors() -> None:
    maps = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 2, 2)
    torch.testing.assert_close(pool(maps), maps.mean((2, 3)))
    assert pool(torch.ones(2, 5)).shape == (2, 5)


def test_outlier_images_take_the_models_shape() -> None:
    grey = as_input_shape(torch.rand(4, 3, 32, 32), 1, 28)
    assert grey.shape == (4, 1, 28, 28) and 0 <= grey.min() and grey.max() <= 1
    colour = as_input_shape(torch.rand(4, 1, 28, 28), 3, 32)
    assert colour.shape == (4, 3, 32, 32) and torch.equal(colour[:, 0], colour[:, 2])
    noise = outlier_images("uniform_noise", 5, 3, 8, seed=1, data_dir=None)
    assert noise.shape == (5, 3, 8, 8)
    assert torch.equal(noise, outlier_images("uniform_noise", 5, 3, 8, seed=1, data_dir=None))
    assert outlier_images("digits", 6, 1, 8, seed=0, data_dir=None).shape == (6, 1, 8, 8)
