"""Splitting analysis work across DDP processes so that results equal the single-process ones.

Work is cut into fixed units (batches or blocks) whose boundaries do not depend on the number of
processes; rank r takes units r, r + W, r + 2W, ...; results are gathered per unit and put back in
unit order. Every unit is computed on exactly the same inputs as in a single process, and sums
are taken in unit order, so tables are identical whatever the number of processes.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from explainlab.runner.activations import eval_device

T = TypeVar("T")


class Workers:
    """This process's share of the work; one process when torch.distributed is not initialised."""

    def __init__(self, progress: bool = False) -> None:
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.progress = progress

    @property
    def device_hint(self) -> torch.device | None:
        """This rank's GPU under a DDP launch (LOCAL_RANK), else None."""
        if self.distributed and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def units(self, n_units: int) -> list[int]:
        return list(range(self.rank, n_units, self.world))

    def map(self, n_units: int, work: Callable[[int], T], desc: str | None = None) -> list[T]:
        """[work(0), ..., work(n_units - 1)] on every rank, each unit computed by one rank."""
        units = self.units(n_units)
        if desc and self.progress and self.is_main:
            units = tqdm(units, desc=desc, leave=False)
        mine = {u: _to_cpu(work(u)) for u in units}
        if not self.distributed:
            return [mine[u] for u in range(n_units)]
        gathered: list[dict[int, Any]] = [{} for _ in range(self.world)]
        dist.all_gather_object(gathered, mine)
        merged = {u: r for part in gathered for u, r in part.items()}
        return [merged[u] for u in range(n_units)]

    def mapper(self, desc: str | None = None) -> Callable[[int, Callable[[int], T]], list[T]]:
        """`map` as a `map_units(n, work)` callable for the estimators."""
        return lambda n_units, work: self.map(n_units, work, desc)

    def from_main(self, value: T | None) -> T:
        """`value` as computed on rank 0, on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, work: Callable[[], T]) -> T:
        """`work()` computed on rank 0 alone, its result on every rank."""
        return self.from_main(work() if self.is_main else None)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def release_process_group() -> None:
    """Destroy the default process group if one is alive.

    A worker process that exits with a live gloo group can abort in C++ teardown ("terminate
    called without an active exception"); workers register this with `atexit` so the group is
    torn down while the interpreter is still intact.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def release_process_group_at_exit() -> None:
    """Register `release_process_group` once per process (idempotent)."""
    global _REGISTERED
    if not _REGISTERED:
        atexit.register(release_process_group)
        _REGISTERED = True


_REGISTERED = False


def wants_processes(trainer: Mapping[str, Any]) -> bool:
    """A DDP strategy with more than one process (the `trainer` config) asks for the analysis to be
    split too."""
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    return strategy.startswith("ddp") and (
        devices == -1 or devices == "auto" or int(devices) > 1 or int(trainer.get("num_nodes", 1)) > 1
    )


def launch_processes(trainer: Mapping[str, Any], work: Callable[..., T], *args: Any) -> T:
    """Run `work(fabric, *args)` on the `trainer` config's DDP processes through Lightning Fabric;
    returns rank 0's result. `work` must be a module-level function (spawned processes pickle it)."""
    from lightning.fabric import Fabric

    fabric = Fabric(
        accelerator=trainer.get("accelerator", "auto"),
        devices=trainer.get("devices", 1),
        num_nodes=trainer.get("num_nodes", 1),
        strategy=trainer.get("strategy"),
    )
    return fabric.launch(_on_rank, work, *args)


def _on_rank(fabric: Any, work: Callable[..., T], *args: Any) -> T:
    release_process_group_at_exit()
    return work(fabric, *args)


def run_split(trainer: Mapping[str, Any], work: Callable[..., T], *args: Any) -> T:
    """`work(device, *args)` in this process, or on the `trainer` config's DDP processes when it
    asks for several and none are running yet (Lightning Fabric; rank 0's result is returned).
    `work` is a module-level function or a bound method of a picklable object."""
    if wants_processes(trainer) and not Workers().distributed:
        return launch_processes(trainer, _with_device, work, *args)
    return work(Workers().device_hint or eval_device(trainer.get("accelerator")), *args)


def _with_device(fabric: Any, work: Callable[..., T], *args: Any) -> T:
    return work(fabric.device, *args)
