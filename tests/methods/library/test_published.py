"""The original code's published output: ResNet44 (akamaster weights) layer1 library sizes on the
real CIFAR-10 training set at θ = 0.64, 0.66, 0.68, 0.70 are 2, 7, 27 and 107."""

from __future__ import annotations

from pathlib import Path

import pytest


# slow: ~80 s and 3.3 GB (50,000 layer1 patterns); run with -m slow
@pytest.mark.slow
@pytest.mark.shared_data
def test_resnet44_layer1_library_sizes(shared_data: Path, shared_models: Path) -> None:
    from explainlab.data import CIFAR10DataModule
    from explainlab.methods.library import build_libraries
    from explainlab.models import pretrained_cifar_resnet
    from explainlab.runner.activations import extract

    model = pretrained_cifar_resnet("resnet44", models_dir=str(shared_models))
    data = CIFAR10DataModule(root=str(shared_data), download=False, verify=False, val_size=0, eval_batch_size=1000)
    haps = extract(model, data.loader("train"), ["layer1"], with_logits=False)["layer1"]
    assert haps.shape == (50000, 16 * 32 * 32)
    libraries = build_libraries(haps, [0.64, 0.66, 0.68, 0.70])
    assert {t: len(idx) for t, idx in libraries.items()} == {0.64: 2, 0.66: 7, 0.68: 27, 0.70: 107}
