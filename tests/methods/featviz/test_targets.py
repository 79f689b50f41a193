"""`objectives.from_target`: the study's target specs as objectives."""

from __future__ import annotations

import pytest
import torch

from explainlab.methods.featviz import from_target


def test_target_specs_give_their_objectives() -> None:
    z = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    acts = {"conv": torch.arange(2 * 2 * 4, dtype=torch.float32).view(2, 2, 2, 2)}
    objective, label = from_target({"layer": "conv", "channel": 1})
    assert label == "conv:1" and torch.equal(objective(acts, z), acts["conv"][:, 1].flatten(1).mean(1))
    for kind, expected in [("logit", z[:, 2]), ("probability", z.softmax(1)[:, 2]),
                           ("log_probability", z.log_softmax(1)[:, 2])]:  # fmt: skip
        objective, label = from_target({"class": 2}, kind)
        assert label == "class:2"
        torch.testing.assert_close(objective({}, z), expected)
    objective, label = from_target({"classes": [0, 2]})
    assert label == "classes:0,2"
    torch.testing.assert_close(objective({}, z), torch.logsumexp(z[:, [0, 2]], 1))


@pytest.mark.parametrize("spec", [{"layer": "x"}, {"classes": []}, {"class": 1, "layer": "x"}, {}])
def test_bad_target_specs_are_refused(spec: dict) -> None:
    with pytest.raises(ValueError, match="a target is"):
        from_target(spec)
    with pytest.raises(ValueError, match="class_objective"):
        from_target({"class": 0}, "softmax")
