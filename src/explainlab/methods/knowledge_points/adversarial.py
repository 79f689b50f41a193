"""How an adversarial attack moves projected regional features (paper 002, Sec. 4, Figs. 7-8):
orientation and strength changes, the four trajectory types of regions, and the utilities of the
regions that become important for the adversarial class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F


def class_posterior(probs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """probs (N, R, C), classes (N,) -> (N, R): each region's posterior of its image's class."""
    return probs.gather(2, classes[:, None, None].expand(-1, probs.shape[1], 1))[..., 0]


def trajectory_analysis(
    features: Mapping[str, Sequence[torch.Tensor]],
    posteriors: Mapping[str, Sequence[torch.Tensor]],
    c_ori: torch.Tensor,
    c_adv: torch.Tensor,
    tau: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per layer, over the successfully attacked images (c_adv != c_ori):

    features[layer]: [h at step 0 (clean), k_1, ..., k_K (final)], each (N, R, d') (strengths scaled
    as for the knowledge points); posteriors[layer]: the matching p(y | h), each (N, R, C).
    Δorientation = E cos(h_ori, h_adv), Δstrength = E(‖h_ori‖ − ‖h_adv‖); with "important" =
    p(c | h) > τ, the trajectory types (1: important for c_ori before and for c_adv after, never
    unimportant on the way; 2: the same but unimportant for both at some step in between;
    3: unimportant before, important for c_adv after; 4: important before, unimportant after);
    and the utilities p(c_ori | h_ori) of regions important for c_adv after.
    Returns (rows: layer, images, attacked, delta_orientation, delta_strength, type1-4;
    utilities: layer, utility).
    """
    success = c_adv != c_ori
    attacked = int(success.sum())
    rows, utilities = [], []
    for layer in features:
        h_ori, h_adv = features[layer][0][success], features[layer][-1][success]
        # (checkpoints + 1, attacked images, regions) posteriors of the original / adversarial class
        p_ori = torch.stack([class_posterior(p[success], c_ori[success]) for p in posteriors[layer]])
        p_adv = torch.stack([class_posterior(p[success], c_adv[success]) for p in posteriors[layer]])
        before, after = p_ori[0] > tau, p_adv[-1] > tau
        lost_on_the_way = ((p_ori[1:-1] <= tau) & (p_adv[1:-1] <= tau)).any(0)
        nan = float("nan")
        rows.append(
            {
                "layer": layer,
                "images": len(c_ori),
                "attacked": attacked,
                "delta_orientation": float(F.cosine_similarity(h_ori, h_adv, dim=2).mean()) if attacked else nan,
                "delta_strength": float((h_ori.norm(dim=2) - h_adv.norm(dim=2)).mean()) if attacked else nan,
                "type1": int((before & after & ~lost_on_the_way).sum()),
                "type2": int((before & after & lost_on_the_way).sum()),
                "type3": int((~before & after).sum()),
                "type4": int((before & ~after).sum()),
            }
        )
        utilities += [{"layer": layer, "utility": float(u)} for u in p_ori[0][after]]
    return pd.DataFrame(rows), pd.DataFrame(utilities, columns=["layer", "utility"])
