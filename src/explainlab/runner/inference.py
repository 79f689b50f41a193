"""Batched forward passes over a loader, on one device, in evaluation mode."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


@torch.no_grad()
def predict_logits(
    model: nn.Module, batches: Iterable, device: torch.device | str = "cpu", progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) of every batch (x, y), on the CPU, in loader order."""
    was_training = model.training
    model.eval().to(device)
    logits, labels = [], []
    for x, y in tqdm(batches, desc="predict", disable=not progress, leave=False):
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def score(
    model: nn.Module, batches: Iterable, device: torch.device | str = "cpu", progress: bool = False
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Accuracy, mean cross-entropy and count over all batches, plus the logits and labels.

    Computed in one process over the whole split, so single- and multi-process runs report the
    same numbers.
    """
    logits, labels = predict_logits(model, batches, device, progress=progress)
    metrics = {
        "acc": float((logits.argmax(1) == labels).float().mean()),
        "loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "n": len(labels),
    }
    return metrics, logits, labels


def eval_device(accelerator: str | None) -> torch.device:
    """CUDA when available and not forced to the CPU by the trainer's accelerator."""
    return torch.device("cuda" if torch.cuda.is_available() and accelerator != "cpu" else "cpu")
