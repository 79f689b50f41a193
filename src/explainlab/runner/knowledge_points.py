"""`method=knowledge_points`: sample and regional vMF projections of a trained classifier and the
knowledge points of each conv layer (paper 002, Sec. 3.2-3.4, Tables 1-2).

Tables (results/): knowledge_points.csv (model, epoch, layer, images, regions, n_points, n_reliable,
ratio), projection_corr.csv (method, correlation of ‖embedding‖ with the softmax entropy),
regional_corr.csv (layer, correlation of ‖h‖ with w), sample_fit.csv (KL per round).
Figures: sample_projection (3-D scatter with class directions), knowledge_points (bars per layer).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from scipy.stats import pearsonr

from explainlab.errors import ConfigValueError, check_choice, check_float, check_int
from explainlab.methods.knowledge_points import (
    RegionalImportance,
    RegionalProjection,
    SampleProjection,
    calibrate_strength,
    knowledge_points,
    strength_scale,
    vmf_log_posterior,
)
from explainlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS
from explainlab.models.layers import ActivationRecorder, resolve_layers
from explainlab.results import kp_figures
from explainlab.runner.context import RunContext
from explainlab.runner.inference import eval_device
from explainlab.runner.train import load_snapshot, log_to_dashboards, train_unless_given

log = logging.getLogger(__name__)

STRENGTHS = ("calibrated", "per_layer", "learned")
EMBEDDINGS = ("pca", "tsne", "lle", "isomap")

# (regional layers, sample layer) when the config leaves them null.
_DEFAULT_LAYERS = {
    **{n: (["layer1", "layer2", "layer3"], "layer3") for n in CIFAR_RESNET_DEPTHS},
    **{f"resnet{d}": (["layer2", "layer3", "layer4"], "layer4") for d in (18, 34, 50, 101, 152)},
    **{n: (["conv1", "conv2"], "fc1") for n in ("mnist_cnn", "lenet_classic", "small_cnn")},
}


def default_layers(model_name: str) -> tuple[list[str], str]:
    """The regional layers and sample layer used for `model_name` when method.layers is null."""
    if model_name not in _DEFAULT_LAYERS:
        raise ConfigValueError(
            "method.layers",
            None,
            f"explicit conv layers for {model_name} (defaults exist for {sorted(_DEFAULT_LAYERS)})",
        )
    return _DEFAULT_LAYERS[model_name]


@torch.no_grad()
def layer_outputs(
    model: torch.nn.Module,
    loader: Sequence[tuple[torch.Tensor, torch.Tensor]],
    layers: Sequence[str],
    device: torch.device,
    max_side: int | None,
) -> dict[str, torch.Tensor]:
    """Raw outputs of `layers` (4-D maps average-pooled to at most max_side x max_side; None keeps
    them as they are), logits and labels of every batch, on the CPU in loader order."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in [*layers, "logits", "labels"]}
    model.eval().to(device)
    with ActivationRecorder(model, layers, key="method.layers") as rec:
        for x, y in loader:
            out["logits"].append(model(x.to(device)).float().cpu())
            out["labels"].append(y)
            for name in layers:
                act = rec.activations[name].float()
                if max_side is not None and act.dim() == 4 and max(act.shape[-2:]) > max_side:
                    act = F.adaptive_avg_pool2d(act, (min(act.shape[-2], max_side), min(act.shape[-1], max_side)))
                out[name].append(act.cpu())
    return {name: torch.cat(values) for name, values in out.items()}


def class_posterior(probs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """probs (N, R, C), classes (N,) -> (N, R): each region's posterior of its image's class."""
    return probs.gather(2, classes[:, None, None].expand(-1, probs.shape[1], 1))[..., 0]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of (N, C) probabilities."""
    return -torch.special.xlogy(probs, probs).sum(1)


def embedding_norms(features: np.ndarray, method: str, dim: int, seed: int) -> np.ndarray:
    """‖embedding‖ of each sample under a scikit-learn embedding of `features` (Table 1's baselines)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, Isomap, LocallyLinearEmbedding

    neighbours = min(10, len(features) - 1)
    model = {
        "pca": lambda: PCA(dim, random_state=seed),
        "tsne": lambda: TSNE(
            dim,
            random_state=seed,
            init="pca",
            perplexity=min(30.0, (len(features) - 1) / 3),
            method="exact" if dim > 3 else "barnes_hut",
        ),  # fmt: skip
        "lle": lambda: LocallyLinearEmbedding(n_neighbors=neighbours, n_components=dim, random_state=seed),
        "isomap": lambda: Isomap(n_neighbors=neighbours, n_components=dim),
    }[method]()
    embedded = model.fit_transform(features)
    return np.linalg.norm(embedded - embedded.mean(0), axis=1)


class KnowledgePointStudy:
    """Sample projection of `sample_layer` (global-average-pooled when it is a conv map) and regional
    projections + knowledge points of each of `layers`, on the first `images` images of `split`.

    tau: knowledge-point threshold on max_c p(y=c | s·h^(r)), with the strength scale s per layer from
    `strength`: 'calibrated' (default) fits the reference layer's scale so that its regions, as an
    importance-weighted product of experts, reproduce the DNN's P(y|x) best (`calibrate_strength`),
    then gives every layer the reference layer's mean strength (the paper's normalisation);
    'per_layer' fits every layer's scale that way (no normalisation); 'learned' normalises to the
    reference layer's strength as the regional projection learned it (whose absolute scale is set by
    the arbitrary similarity temperature). reference_layer: the last of `layers` by default.
    max_side: feature maps are average-pooled to at most this many positions per side before the
    regional analysis (its cost grows as (images·H·W)²).
    """

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        sample_layer: str | None = None,
        *,
        split: str = "test",
        images: int = 500,
        dim: int = 3,
        kappa: str = "linear",
        tau: float = 0.4,
        strength: str = "calibrated",
        reference_layer: str | None = None,
        alpha: float = 0.1,
        max_side: int = 8,
        sample_rounds: int = 30,
        sample_steps: int = 20,
        regional_epochs: int = 10,
        regional_lr: float = 0.05,
        importance_steps: int = 30,
        batch_size: int = 64,
        embeddings: Sequence[str] = EMBEDDINGS,
        epochs: Sequence[int] = (),
        adversarial: bool = False,
        progress: bool = True,
    ) -> None:
        check_choice("method.split", split, ("train", "val", "test"))
        check_int("method.images", images, minimum=4)
        check_choice("method.dim", dim, (2, 3, 4))
        check_choice("method.kappa", kappa, ("linear", "fitted"))
        check_float("method.tau", tau, low=0.0, high=1.0)
        check_choice("method.strength", strength, STRENGTHS)
        check_int("method.max_side", max_side, minimum=1)
        for name in embeddings:
            check_choice("method.embeddings", name, EMBEDDINGS)
        if layers is not None and not layers:
            raise ConfigValueError("method.layers", list(layers), "at least one conv layer (or null for the defaults)")
        self.layers = list(layers) if layers is not None else None
        self.sample_layer, self.split, self.images = sample_layer, split, images
        self.dim, self.kappa, self.tau, self.alpha, self.max_side = dim, kappa, tau, alpha, max_side
        self.reference_layer, self.strength = reference_layer, strength
        self.sample_rounds, self.sample_steps = sample_rounds, sample_steps
        self.regional_epochs, self.importance_steps, self.batch_size = regional_epochs, importance_steps, batch_size
        self.regional_lr = regional_lr
        self.embeddings, self.progress = list(embeddings), progress
        for epoch in epochs:
            check_int("method.epochs", epoch, minimum=1)
        self.epochs = sorted({int(e) for e in epochs})
        self.adversarial_study = adversarial

    def resolve_layers(self, cfg: DictConfig) -> None:
        """Fill null layers from the model's defaults and check the reference layer."""
        if self.layers is None or self.sample_layer is None:
            layers, sample_layer = default_layers(cfg.model.name)
            self.layers, self.sample_layer = self.layers or layers, self.sample_layer or sample_layer
        self.reference_layer = self.reference_layer or self.layers[-1]
        if self.reference_layer not in self.layers:
            raise ConfigValueError("method.reference_layer", self.reference_layer, f"one of {self.layers}")

    def first_images(self, ctx: RunContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the first `images` images of `split`, in data set order (the data sets return
        whole batches)."""
        dataset = ctx.datamodule.dataset(self.split)
        n, size = min(self.images, len(dataset)), ctx.datamodule.eval_batch_size
        return [dataset.__getitems__(list(range(i, min(i + size, n)))) for i in range(0, n, size)]

    def analyse(
        self, model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *, name: str, seed: int,
        device: torch.device, epoch: int = -1,
    ) -> dict[str, Any]:  # fmt: skip
        """Sample projection, regional projections and knowledge points of one model on `batches`.

        Returns {'points': rows of knowledge_points.csv, 'corr': Table 1 rows, 'regional_corr': Table 2
        rows, 'projection': the SampleProjection, 'g': (N, d'), 'labels': (N,), 'outputs': layer outputs}.
        """
        torch.manual_seed(seed)
        outs = layer_outputs(model, batches, list(dict.fromkeys([*self.layers, self.sample_layer])), device,
                             self.max_side)  # fmt: skip
        labels, probs = outs["labels"], outs["logits"].softmax(1)
        sample = outs[self.sample_layer]
        sample = sample.mean((2, 3)) if sample.dim() == 4 else sample.flatten(1)
        projection = SampleProjection(self.dim, kappa=self.kappa, rounds=self.sample_rounds, steps=self.sample_steps,
                                      seed=seed, device=device).fit(sample, probs)  # fmt: skip
        g = projection.transform(sample).cpu()

        corr_rows = [{"method": "ours", "correlation": float(pearsonr(g.norm(dim=1), entropy(probs))[0])}]
        for method in self.embeddings:
            norms = embedding_norms(sample.double().numpy(), method, self.dim, seed)
            corr_rows.append({"method": method, "correlation": float(pearsonr(norms, entropy(probs).numpy())[0])})

        projected, importance, regionals = {}, {}, {}
        for layer in self.layers:
            fmap = outs[layer]
            if fmap.dim() != 4:
                raise ConfigValueError("method.layers", layer, "conv layers with (N, K, H, W) outputs")
            w, _ = RegionalImportance(steps=self.importance_steps, batch_size=self.batch_size).fit_transform(
                fmap.to(device), outs["logits"].to(device)
            )
            regional = RegionalProjection(self.dim, alpha=self.alpha, epochs=self.regional_epochs, lr=self.regional_lr,
                                          batch_size=self.batch_size, seed=seed, device=device)  # fmt: skip
            regional.fit(fmap.to(device), outs["logits"], g, w)
            projected[layer], importance[layer] = regional.transform(fmap.to(device)).cpu(), w.cpu()
            regionals[layer] = regional
            log.info("%s %s: regional loss %.4f -> %.4f", name, layer, regional.history_[0], regional.history_[-1])

        scales, calibration_kl = self.strength_scales(projected, importance, probs, projection)
        kp_rows, region_rows = [], []
        for layer in self.layers:
            h = projected[layer]
            found = knowledge_points(h, labels, projection.log_prior_.cpu(), projection.directions_.cpu(),
                                     projection.kappa_, tau=self.tau, scale=scales[layer])  # fmt: skip
            cos_to_g = F.cosine_similarity(h, g[:, None, :], dim=2)
            kp_rows.append(
                {
                    "model": name,
                    "epoch": epoch,
                    "layer": layer,
                    "images": len(h),
                    "regions": h.shape[1],
                    "n_points": found.n_points,
                    "n_reliable": found.n_reliable,
                    "ratio": found.ratio,
                    "scale": scales[layer],
                    "strength": float((scales[layer] * h).norm(dim=2).mean()),
                    "calibration_kl": calibration_kl.get(layer, float("nan")),
                    # Σ_r w^r cos(g, h^(r)) averaged over images: how well L_align tied h to g's frame.
                    "alignment": float((importance[layer] * cos_to_g).sum(1).mean()),
                }
            )
            strength = h.norm(dim=2).flatten().numpy()
            region_rows.append(
                {"layer": layer, "correlation": float(pearsonr(strength, importance[layer].flatten().numpy())[0])}
            )
        return {"points": kp_rows, "corr": corr_rows, "regional_corr": region_rows, "projection": projection, "g": g,
                "labels": labels, "outputs": outs, "regional": regionals, "scales": scales,
                "projected": projected, "importance": importance}  # fmt: skip

    def strength_scales(
        self, projected: dict[str, torch.Tensor], importance: dict[str, torch.Tensor], probs: torch.Tensor,
        projection: SampleProjection,
    ) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
        """Strength scale per layer for the knowledge-point test (see `strength`), and the KL of each
        calibrated layer's fit."""
        args = (probs, projection.log_prior_.cpu(), projection.directions_.cpu(), projection.kappa_)
        calibrated = {"calibrated": [self.reference_layer], "per_layer": self.layers, "learned": []}[self.strength]
        fits = {layer: calibrate_strength(projected[layer], importance[layer], *args) for layer in calibrated}
        prior_kl = float((torch.xlogy(probs, probs) - probs * projection.log_prior_.cpu()).sum(1).mean())
        for layer, (_, kl) in fits.items():
            if kl > 0.95 * prior_kl:
                log.warning(
                    "%s: its regional features explain the DNN's answers hardly better than the class prior "
                    "(KL %.3f vs %.3f), so the calibrated strength is near 0 and few or no regions count as "
                    "knowledge points; a larger method.alpha ties them more closely to the sample features",
                    layer, kl, prior_kl,
                )  # fmt: skip
        if self.strength == "per_layer":
            return {layer: s for layer, (s, _) in fits.items()}, {layer: kl for layer, (_, kl) in fits.items()}
        reference = projected[self.reference_layer] * (fits[self.reference_layer][0] if fits else 1.0)
        scales = {layer: strength_scale(projected[layer], reference) for layer in self.layers}
        return scales, {layer: kl for layer, (_, kl) in fits.items()}

    def adversarial(
        self, model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], found: dict[str, Any],
        attack: Any, *, seed: int, device: torch.device, checkpoints: int = 4,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
        """Sec. 4 (Figs. 7-8): how an untargeted attack moves the projected regional features.

        The attack is replayed with the same seed for 0 < k_1 < ... < steps steps (a prefix of one
        trajectory). Over successfully attacked images (DNN answer changed, c_ori -> c_adv), per layer:
        Δorientation = E cos(h_ori, h_adv), Δstrength = E(‖h_ori‖ − ‖h_adv‖) (strengths scaled as for the
        knowledge points), the four trajectory types with "important" = p(c | h) > τ (1: important for
        c_ori before and for c_adv after, never unimportant on the way; 2: the same but unimportant at
        some step in between; 3: unimportant before, important for c_adv after; 4: important before,
        unimportant after); and the utilities p(c_ori | h_ori) of regions important for c_adv after.
        Returns (adversarial table per layer, utilities table).
        """
        x = torch.cat([b[0] for b in batches])
        model.eval().to(device)
        with torch.no_grad():
            c_ori = torch.cat([model(b[0].to(device)).argmax(1).cpu() for b in batches])
        grid = sorted({max(1, round(attack.steps * i / checkpoints)) for i in range(1, checkpoints + 1)})
        images = [x]
        for steps in grid:
            torch.manual_seed(seed)
            replay = copy.copy(attack)
            replay.steps = steps
            images.append(replay.perturb(model, x.to(device), c_ori.to(device)).cpu())
        projection = found["projection"]
        posteriors: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        features: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        c_adv = c_ori
        for adv in images:
            size = max(len(b[0]) for b in batches)
            chunks = [(adv[i : i + size], c_ori[i : i + size]) for i in range(0, len(adv), size)]
            outs = layer_outputs(model, chunks, self.layers, device, self.max_side)
            c_adv = outs["logits"].argmax(1)
            for layer in self.layers:
                h = found["regional"][layer].transform(outs[layer].to(device)).cpu() * found["scales"][layer]
                features[layer].append(h)
                prior, directions = projection.log_prior_.cpu(), projection.directions_.cpu()
                posteriors[layer].append(vmf_log_posterior(h, prior, directions, projection.kappa_).exp())
        success = c_adv != c_ori
        attacked = int(success.sum())
        rows, utilities = [], []
        for layer in self.layers:
            h_ori, h_adv = features[layer][0][success], features[layer][-1][success]
            # (checkpoints + 1, attacked images, regions) posteriors of the original / adversarial class
            p_ori = torch.stack([class_posterior(p[success], c_ori[success]) for p in posteriors[layer]])
            p_adv = torch.stack([class_posterior(p[success], c_adv[success]) for p in posteriors[layer]])
            before, after = p_ori[0] > self.tau, p_adv[-1] > self.tau
            lost_on_the_way = ((p_ori[1:-1] <= self.tau) & (p_adv[1:-1] <= self.tau)).any(0)
            nan = float("nan")
            rows.append(
                {
                    "layer": layer,
                    "images": len(x),
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

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        self.resolve_layers(cfg)
        external = cfg.model.get("pretrained") or cfg.model.get("checkpoint")
        if self.epochs and external:
            raise ConfigValueError(
                "method.epochs", self.epochs, "[] for a pretrained model (it has no training history)"
            )
        if self.epochs and max(self.epochs) > cfg.recipe.epochs:
            raise ConfigValueError("method.epochs", self.epochs, f"epochs within recipe.epochs={cfg.recipe.epochs}")
        if self.adversarial_study and not cfg.get("attack"):
            raise ConfigValueError("method.adversarial", True, "an attack: add attack=pgd_linf (or set it false)")
        resolve_layers(ctx.model, [*self.layers, self.sample_layer], key="method.layers")
        train_unless_given(ctx, snapshot_epochs=[e for e in self.epochs if e < cfg.recipe.epochs])
        device = eval_device(cfg.trainer.get("accelerator"))
        batches = self.first_images(ctx)
        emergence = []
        for epoch in (e for e in self.epochs if e < cfg.recipe.epochs):  # Fig. 3: the same analysis per epoch
            snapshot = copy.deepcopy(ctx.model)
            snapshot.net.load_state_dict(load_snapshot(ctx, epoch))
            emergence += self.analyse(snapshot, batches, name=cfg.model.name, seed=cfg.seed, device=device,
                                      epoch=epoch)["points"]  # fmt: skip
        final_epoch = cfg.recipe.epochs if not external else -1
        found = self.analyse(ctx.model, batches, name=cfg.model.name, seed=cfg.seed, device=device, epoch=final_epoch)
        kp_rows, corr_rows, region_rows = found["points"], found["corr"], found["regional_corr"]
        projection, g, labels = found["projection"], found["g"], found["labels"]
        kp_table, corr_table = pd.DataFrame(emergence + kp_rows), pd.DataFrame(corr_rows)
        adversarial = utilities = None
        if self.adversarial_study:
            adversarial, utilities = self.adversarial(ctx.model, batches, found, instantiate(cfg.attack),
                                                      seed=cfg.seed, device=device)  # fmt: skip
        rec = ctx.recorder
        rec.save_config(cfg)
        rec.save_table("knowledge_points", kp_table)
        rec.save_table("projection_corr", corr_table)
        rec.save_table("regional_corr", pd.DataFrame(region_rows))
        rec.save_table("sample_fit", pd.DataFrame({"round": range(1, len(projection.history_) + 1),
                                                   "kl": projection.history_}))  # fmt: skip
        rec.save_figure("sample_projection", kp_figures.sample_scatter(g, labels, projection.directions_.cpu()))
        rec.save_figure("knowledge_points", kp_figures.points_per_layer(pd.DataFrame(kp_rows)))
        if emergence:
            rec.save_figure("emergence", kp_figures.emergence(kp_table))
        if len({found["projected"][layer].shape[1] for layer in self.layers}) == 1:  # one region grid for all
            scaled = {layer: found["projected"][layer] * found["scales"][layer] for layer in self.layers}
            rec.save_figure("through_layers", kp_figures.through_layers(scaled, labels, projection.directions_.cpu()))
        if adversarial is not None:
            rec.save_table("adversarial", adversarial)
            rec.save_table("adversarial_utility", utilities)
            rec.save_figure("adversarial", kp_figures.adversarial(adversarial, utilities, self.tau))
        metrics: dict[str, Any] = {"sample_kl": projection.history_[-1], "seconds": time.perf_counter() - start}
        metrics |= {f"corr/{r['method']}": r["correlation"] for r in corr_rows}
        metrics |= {f"points/{r['layer']}": r["n_points"] for r in kp_rows}
        metrics |= {f"reliable_ratio/{r['layer']}": r["ratio"] for r in kp_rows}
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items()})
        rec.log_metrics(metrics)
        headline = {"images": len(labels), "sample projection KL": metrics["sample_kl"],
                    "corr(‖g‖, entropy) ours": corr_rows[0]["correlation"]}  # fmt: skip
        headline |= {f"corr {r['method']}": r["correlation"] for r in corr_rows[1:]}
        headline |= {
            f"points {r['layer']}": f"{r['n_points']} ({r['ratio']:.2f} reliable, alignment {r['alignment']:.2f})"
            for r in kp_rows
        }
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab knowledge points: {cfg.model.name}", headline)
        return metrics
