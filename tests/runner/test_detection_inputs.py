"""Inputs of the detection study: pooling, shape conversion of outlier sets, the attack cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explainlab.attacks.pgd import LinfPGD
from explainlab.runner.detection_inputs import AttackCache, as_input_shape, attacked_images, outlier_images, pool


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


def test_attacked_images_are_cached_by_their_key(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    attack = LinfPGD(eps=0.1, steps=3, step=0.05, batch_size=4)
    cache = AttackCache(tmp_path)
    spec = {"model": "m", "images": "test[0:6]"}
    adv, hit = attacked_images(model, attack, x, y, seed=0, spec=spec, cache=cache, device=torch.device("cpu"))
    assert not hit and (adv - x).abs().max() <= 0.1 + 1e-6
    again, hit = attacked_images(model, attack, x, y, seed=0, spec=spec, cache=cache, device=torch.device("cpu"))
    assert hit and torch.equal(again, adv)
    other, hit = attacked_images(model, attack, x, y, seed=1, spec=spec, cache=cache, device=torch.device("cpu"))
    assert not hit and not torch.equal(other, adv)
    # An entry whose stored key differs (a renamed or corrupted file) is not used: it is moved aside
    # with a warning naming it, and the attack is run again (results.cache.EntryStore, issue 14).
    files = sorted(cache.folder.glob("*.pt"))
    files[0].write_bytes(files[1].read_bytes())
    with pytest.warns(RuntimeWarning, match="written for another key"):
        redone = [attacked_images(model, attack, x, y, seed=s, spec=spec, cache=cache, device=torch.device("cpu"))
                  for s in (0, 1)]  # fmt: skip
    assert [hit for _, hit in redone].count(False) == 1
    assert torch.equal(redone[0][0], adv) and torch.equal(redone[1][0], other)
    assert len(list(cache.folder.glob("*.corrupt-*"))) == 1
