"""The protocols: the supervised combination never sees a scored image; the filter; the rows."""

from __future__ import annotations

import torch

from explainlab.methods.detection import MSP, Entry, Inputs, LayerwiseDetector, fit_all, run_protocols


class Spy(LayerwiseDetector):
    """Layer score = the image's id (clean: i, attacked: 1000 + i); records what it is shown."""

    name = "spy"

    def __init__(self) -> None:
        super().__init__(["x"])
        self.fitted_on: list[set[int]] = []
        self.scored: list[set[int]] = []

    def _layer_scores(self, features):  # noqa: ANN001
        return features["x"].double()

    def fit_combiner(self, clean, attacked, *, seed=0):  # noqa: ANN001
        self.fitted_on.append({int(v) % 1000 for v in torch.cat([clean, attacked]).flatten()})
        return super().fit_combiner(clean, attacked, seed=seed)

    def combine(self, per_layer):  # noqa: ANN001
        if self.combiner_ is not None:
            self.scored.append({int(v) % 1000 for v in per_layer.flatten()})
        return super().combine(per_layer)


def setup(n: int = 40):
    ids = torch.arange(n, dtype=torch.float64)[:, None]
    labels = torch.arange(n) % 2
    logits = torch.nn.functional.one_hot(labels, 2).double() * 3
    flipped_logits = logits.flip(1)
    flipped_logits[::3] = logits[::3]  # every third image survives the attack
    clean = Inputs({"pooled": {"x": ids}}, logits)
    attacked = {0.1: Inputs({"pooled": {"x": ids + 1000}}, flipped_logits)}
    train = Inputs({"pooled": {"x": torch.randn(30, 1, dtype=torch.float64)}}, torch.randn(30, 2), torch.arange(30) % 2)
    return clean, attacked, labels, train


def test_supervised_fit_is_disjoint_from_scored_images() -> None:
    clean, attacked, labels, train = setup()
    spy = Spy()
    entries = [Entry("spy", spy), Entry("msp", MSP())]
    fit_all(entries, train)
    rows, scores = run_protocols(entries, clean, attacked, labels, held_out=0.5, seed=3)
    assert len(spy.fitted_on) == 2 and len(spy.scored) == 4  # (unfiltered, filtered) x (clean, attacked)
    for fitted, scored in zip(spy.fitted_on, [spy.scored[0] | spy.scored[1], spy.scored[2] | spy.scored[3]]):
        assert fitted and scored and not fitted & scored
    table = {(r["detector"], r["protocol"], r["filtered"]): r for r in rows}
    assert len(table) == 8
    # Lee's filter: the images the attack flipped (2 of 3 here) are scored; MSP is read on the
    # same held-out-disjoint images as the supervised spy.
    assert table[("msp", "benign", True)]["n_adv"] == sum(1 for i in range(40) if i % 3)
    assert table[("msp", "supervised", False)]["n_clean"] == table[("spy", "supervised", False)]["n_clean"] == 20
    assert table[("spy", "supervised", False)]["auroc"] == 1.0
    assert table[("msp", "benign", False)]["attack_success_rate"] == sum(1 for i in range(40) if i % 3) / 40
    assert {r["detector"] for r in scores} == {"spy", "msp"} and len(scores) == 2 * 2 * 40


def test_too_few_images_after_the_filter_are_reported_not_dropped() -> None:
    clean, attacked, labels, train = setup(6)
    attacked[0.1].logits = clean.logits.clone()  # nothing flipped
    entries = [Entry("msp", MSP())]
    fit_all(entries, train)
    rows, _ = run_protocols(entries, clean, attacked, labels, protocols=("benign",))
    filtered = [r for r in rows if r["filtered"]]
    assert len(filtered) == 1 and "auroc" not in filtered[0] and ">= 2 clean" in filtered[0]["note"]
    assert all(r["note"] == "" for r in rows if not r["filtered"])
