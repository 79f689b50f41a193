"""Libraries of several layers and thresholds in one pass per layer, and the threshold sets CPL uses."""

from __future__ import annotations

import pytest
import torch

from explainlab.errors import ConfigValueError
from explainlab.methods.library import LibraryNetwork
from explainlab.methods.library.fitting import fit_libraries, threshold_sets, thresholds_per_layer
from tests.methods.library.test_network import clustered


def test_fit_libraries_equals_one_library_per_layer_and_threshold() -> None:
    a, labels = clustered(120, 8, 4, 0.7, seed=1)
    b, _ = clustered(120, 5, 4, 0.9, seed=2)
    logits = torch.nn.functional.one_hot(labels, 4).double() + 0.1 * torch.randn(120, 4, dtype=torch.float64)
    answers = logits.argmax(1)
    calls, spread = [], []

    def once(work):
        calls.append(1)
        return work()

    def map_units(layer):
        spread.append(layer)
        return lambda n, work: [work(u) for u in range(n)]

    wanted = {"a": [0.9, 0.5, 0.5], "b": [0.6]}
    fitted = fit_libraries({"a": a, "b": b}, wanted, logits, block_size=16, once=once, map_units=map_units)
    assert sorted(fitted) == [("a", 0.5), ("a", 0.9), ("b", 0.6)]
    assert len(calls) == 2 and spread == ["a", "b"]  # construction once per layer; links spread per layer
    for (layer, t), lib in fitted.items():
        alone = LibraryNetwork(t, block_size=16).fit({"a": a, "b": b}[layer], answers, 4)
        assert torch.equal(lib.node_index_, alone.node_index_)
        torch.testing.assert_close(lib.links_, alone.links_, rtol=1e-12, atol=1e-12)


def test_threshold_sets_checked_or_one_per_threshold() -> None:
    assert threshold_sets(None, ["x", "y"], [0.5, 0.7], key="k") == {
        "theta=0.5": {"x": 0.5, "y": 0.5},
        "theta=0.7": {"x": 0.7, "y": 0.7},
    }
    assert threshold_sets({"S": {"y": 0.2, "x": 1}}, ["x", "y"], [], key="k") == {"S": {"y": 0.2, "x": 1.0}}
    with pytest.raises(ConfigValueError, match=r"k\.S=.*one θ for each of \['x', 'y'\]"):
        threshold_sets({"S": {"x": 0.2}}, ["x", "y"], [0.5], key="k")


def test_thresholds_per_layer() -> None:
    assert thresholds_per_layer(0.5, None, ["x", "y"]) == {"x": [0.5], "y": [0.5]}
    assert thresholds_per_layer([0.5, 0.6], {"y": 0.3}, ["x", "y"]) == {"x": [0.5, 0.6], "y": [0.3]}
    assert thresholds_per_layer([], {"x": [0.1], "y": [0.2]}, ["x", "y"]) == {"x": [0.1], "y": [0.2]}
    with pytest.raises(ConfigValueError, match=r"method\.thresholds=\[\] is invalid: expected at least one"):
        thresholds_per_layer([], {"x": [0.1]}, ["x", "y"])
    with pytest.raises(ConfigValueError, match=r"method\.thresholds=1\.5 .*\(layer y\)"):
        thresholds_per_layer([0.5], {"y": [1.5]}, ["x", "y"])
    with pytest.raises(ConfigValueError, match=r"method\.layer_thresholds=\['z'\]"):
        thresholds_per_layer([0.5], {"z": [0.5]}, ["x", "y"])
