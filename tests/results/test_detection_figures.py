"""Detection figures on small tables, and a sweep over eps collected into one table and figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from explainlab.results import detection_figures
from explainlab.results.collect import collect_sweep
from tests.results.test_collect import make_sweep


def detection_rows(eps: float) -> pd.DataFrame:
    rows = []
    for detector, auroc in (("msp", 0.7), ("mahalanobis", 0.9), ("cpl", 0.55)):
        for protocol in ("benign", "supervised"):
            for filtered in (False, True):
                rows.append({"scenario": "adversarial", "detector": detector, "protocol": protocol,
                             "threshold_set": "Set2" if detector == "cpl" else "", "eps": eps, "filtered": filtered,
                             "auroc": auroc + eps})  # fmt: skip
    return pd.DataFrame(rows)


def test_figures_draw_every_detector() -> None:
    table = pd.concat([detection_rows(0.01), detection_rows(0.03)])
    fig = detection_figures.auroc_vs_eps(table)
    assert len(fig.axes) == 4 and len(fig.axes[0].lines) == 3 + 1  # three detectors and chance
    plt.close(fig)
    scores = pd.DataFrame(
        [{"detector": d, "eps": e, "index": i, "is_adversarial": a, "score": i * (2 if a else 1)}
         for d in ("msp", "lid") for e in (0.01, 0.03) for a in (False, True) for i in range(5)]
    )  # fmt: skip
    for fig in (detection_figures.roc_curves(scores), detection_figures.histograms(scores)):
        assert fig.axes
        plt.close(fig)


def test_a_sweep_over_eps_collects_into_one_table(tmp_path: Path) -> None:
    jobs = {
        str(i): {"overrides": [f"attack.eps_list=[{eps}]"], "status": "COMPLETED", "tables": {"detection": rows}}
        for i, (eps, rows) in enumerate((eps, detection_rows(eps)) for eps in (0.01, 0.03))
    }
    sweep = make_sweep(tmp_path, ["attack.eps_list=[0.01],[0.03]"], jobs)
    collect_sweep(sweep)
    merged = pd.read_csv(sweep / "collected" / "detection.csv")
    assert len(merged) == 24 and set(merged.eps) == {0.01, 0.03}
    assert (sweep / "collected" / "detection.png").is_file()
