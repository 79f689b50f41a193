"""`method=train` and `method=evaluate`: fit a classifier (or reuse a cached one) and score it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torchmetrics
from omegaconf import DictConfig

from explainlab.errors import CheckpointError, check_choice
from explainlab.models.loading import fingerprint
from explainlab.results import figures
from explainlab.runner.activations import eval_device, score
from explainlab.runner.checkpoint_cache import CheckpointCache
from explainlab.runner.context import RunContext
from explainlab.runner.training import ensure_trained, log_to_dashboards, write_training_outputs


class TrainTask:
    """`method=train`: fit the model, test it, write the epoch table, curves and summary.

    reuse: load a cached checkpoint of the same spec instead of training again.
    resume: continue an interrupted training of the same spec from its last epoch.
    """

    def __init__(self, reuse: bool = True, resume: bool = True) -> None:
        self.reuse, self.resume = reuse, resume

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        ctx = RunContext(cfg)
        trained = ensure_trained(ctx, reuse=self.reuse, resume=self.resume)
        result = trained.as_metrics()
        if not trained.rank_zero:
            return result
        write_training_outputs(ctx, trained)
        result_headline = {
            "test accuracy": result.get("test/acc"),
            "test loss": result.get("test/loss"),
            "training time": f"{trained.seconds:.1f} s",
            "checkpoint": trained.cache_path + (" (reused from cache)" if trained.cached else ""),
        }
        ctx.recorder.summary(f"explainlab train: {cfg.model.name} on {ctx.datamodule.name}", result_headline)
        return result


class EvaluateTask:
    """`method=evaluate`: accuracy and loss of a trained model on one split, with a confusion matrix.

    Weights come from model.checkpoint or model.pretrained when set, else from the checkpoint
    cache entry of the same spec (trained by `method=train`).
    split: 'test', 'val' or 'train'.
    """

    def __init__(self, split: str = "test", progress: bool = True) -> None:
        check_choice("method.split", split, ("test", "val", "train"))
        self.split, self.progress = split, progress

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        ctx = RunContext(cfg)
        source = cfg.model.get("checkpoint") or cfg.model.get("pretrained")
        if not source:
            hit = CheckpointCache(cfg.paths.cache_dir).get(ctx.training_spec())
            if hit is None:
                raise CheckpointError(
                    "no weights to evaluate: set model.checkpoint=PATH or model.pretrained, "
                    "or run method=train with the same model, dataset, recipe and seed first."
                )
            ctx.model.net.load_state_dict(hit["state_dict"])
            source = str(hit["path"])
        device = eval_device(cfg.trainer.get("accelerator"))
        scored, logits, labels = score(ctx.model, ctx.datamodule.loader(self.split), device, progress=self.progress)
        num_classes = cfg.model.num_classes
        preds = logits.argmax(1)
        result = {f"{self.split}/{k}": v for k, v in scored.items()} | {"weights": source}
        result["model_fingerprint"] = fingerprint(ctx.model)
        confusion = torchmetrics.functional.confusion_matrix(preds, labels, task="multiclass", num_classes=num_classes)
        classes = list(ctx.datamodule.classes) or [str(i) for i in range(num_classes)]
        per_class = pd.DataFrame(
            {
                "class": classes,
                "n": confusion.sum(1).tolist(),
                "accuracy": (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist(),
            }
        )
        rec = ctx.recorder
        rec.save_config(cfg)
        rec.save_table(
            "evaluation",
            pd.DataFrame(
                [
                    {
                        "split": self.split,
                        "n": len(labels),
                        "accuracy": result[f"{self.split}/acc"],
                        "loss": result[f"{self.split}/loss"],
                    }
                ]
            ),
        )
        rec.save_table("per_class", per_class)
        rec.save_figure("confusion_matrix", figures.confusion_matrix(confusion.numpy(), classes))
        log_to_dashboards(ctx, {k: v for k, v in result.items() if isinstance(v, float)})
        rec.log_metrics(result)
        rec.summary(
            f"explainlab evaluate: {cfg.model.name} on {ctx.datamodule.name} ({self.split})",
            {
                f"{self.split} accuracy": result[f"{self.split}/acc"],
                f"{self.split} loss": result[f"{self.split}/loss"],
                "images": len(labels),
                "weights": source,
            },
        )
        return result
