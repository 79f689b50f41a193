"""Attacked images, one rule for every study: PGD batches seeded by (seed, eps value, batch), cached
by model fingerprint + data + image indices + attack settings + seed, so the library and detection
studies attack the same images once and read the same adversarial images."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from explainlab.attacks.pgd import LinfPGD
from explainlab.results.cache import EntryStore
from explainlab.runner.activations import FeatureCache
from explainlab.runner.checkpoint_cache import is_rank_zero_process
from explainlab.runner.distributed import Workers

log = logging.getLogger(__name__)


class AttackCache(FeatureCache):
    """`<cache_dir>/attacks/<key>.pt`: attacked images, keyed (and checked on read) like `FeatureCache`."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.folder = Path(cache_dir) / "attacks"
        self.store = EntryStore(self.folder, "attacked-image cache")


def attack_seed(seed: int, eps: float, unit: int) -> int:
    """The torch seed of attack batch `unit` at radius `eps`: by the radius's value (to 1e-6), not
    its place in `eps_list`, so a radius gets the same images whatever else is swept."""
    return seed * 1_000_003 + round(eps * 1e6) * 10_007 + unit


def attacked_images(
    model: nn.Module,
    attack: LinfPGD,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int,
    spec: dict[str, Any],
    cache: AttackCache | None,
    device: torch.device,
    workers: Workers | None = None,
) -> tuple[torch.Tensor, bool]:
    """PGD images (N, C, H, W) of `images` at `attack.eps` and whether they came from the cache.

    Each batch u of `attack.batch_size` starts from its own random start, seeded by
    `attack_seed(seed, eps, u)`, so the images do not depend on the order batches run in or on how
    they are spread over `workers` (DDP ranks; every rank gets all images). The cache key holds
    `spec` (model fingerprint, data, image indices), every attack setting and the seed. The main
    process (rank 0 of a DDP job) holds the key's lock while it attacks and writes, so parallel jobs
    attack once; the other ranks of its job never wait on the lock.
    """
    workers = workers or Workers()
    settings = {k: v for k, v in vars(attack).items() if k != "eps_list"}
    key = {**spec, "attack": settings, "seed": seed}
    main = workers.is_main and is_rank_zero_process()
    with cache.lock(key) if cache is not None and main else nullcontext():
        found = workers.from_main(cache.get(key) if cache is not None and main else None)
        if found is not None:
            log.info("PGD eps=%g: %d attacked images from the cache", attack.eps, len(found))
            return found, True
        batch = attack.batch_size
        # A radius is minutes of silence on a CPU (one batch, no inner progress): say what runs.
        log.info("PGD eps=%g: attacking %d images (%d steps, batches of %d)", attack.eps, len(images),
                 attack.steps, batch)  # fmt: skip
        started = time.perf_counter()

        def one(unit: int) -> torch.Tensor:
            x, y = images[unit * batch : (unit + 1) * batch], labels[unit * batch : (unit + 1) * batch]
            torch.manual_seed(attack_seed(seed, attack.eps, unit))
            return attack.perturb(model, x.to(device), y.to(device)).cpu()

        adv = torch.cat(workers.map(-(-len(images) // batch), one, desc=f"PGD eps={attack.eps:g}"))
        log.info("PGD eps=%g: done in %.0f s", attack.eps, time.perf_counter() - started)
        if cache is not None and main:
            cache.put(key, adv)
    return adv, False
