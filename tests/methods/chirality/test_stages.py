"""Stage assignment against the paper's Tables I-II, and the stretched positions of Fig. 5."""

from __future__ import annotations

from collections import Counter

import pytest
import torchvision

from explainlab.methods.chirality import analysed_stage, layer_stages, model_family, stretched_positions
from explainlab.models.build import build_model

# Flippable conv layers per stage (Tables I and II; ResNet stage 1 is the 7x7 stem).
TABLES = {
    "alexnet": [1, 1, 1, 1, 1],
    "vgg11": [1, 1, 2, 2, 2],
    "vgg13": [2, 2, 2, 2, 2],
    "vgg16": [2, 2, 3, 3, 3],
    "vgg19": [2, 2, 4, 4, 4],
    "resnet18": [1, 4, 4, 4, 4],
    "resnet34": [1, 6, 8, 12, 6],
    "resnet50": [1, 3, 4, 6, 3],
    "resnet101": [1, 3, 4, 23, 3],
    "resnet152": [1, 3, 8, 36, 3],
}


@pytest.mark.parametrize("name", list(TABLES))
def test_stages_follow_the_papers_tables(name: str) -> None:
    counts = Counter(layer_stages(torchvision.models.get_model(name)).values())
    assert [counts[s] for s in range(1, 6)] == TABLES[name]


def test_cifar_resnets_and_small_nets() -> None:
    resnet20 = build_model("resnet20", in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    assert model_family(resnet20) == "cifar_resnet"
    assert Counter(layer_stages(resnet20).values()) == {1: 1, 2: 6, 3: 6, 4: 6}
    mnist = build_model("mnist_cnn")
    assert model_family(mnist) == "other" and layer_stages(mnist) == {"conv1": 1, "conv2": 2}
    assert not analysed_stage("resnet", 1) and analysed_stage("resnet", 2) and analysed_stage("vgg", 1)


def test_stretched_positions_fill_each_stage_evenly() -> None:
    assert stretched_positions([2, 2, 3, 5, 5, 5, 5]) == [1.25, 1.75, 2.5, 4.125, 4.375, 4.625, 4.875]
