"""Library networks over hidden activation patterns (paper 001, Lee 2019, Eq. 1-3).

A library stores the novel HAPs of one layer: visiting samples in data set order, a sample becomes
a node iff its largest cosine similarity to the nodes stored so far is below the threshold θ
(Eq. 1; the first sample is always stored). Hebbian links connect nodes to the DNN's answers
(Eq. 2) and predict them from the top-k most similar nodes (Eq. 3).

Construction is exact and batched: a block of samples is compared with the whole library in one
matrix product; only the block's candidates (those novel w.r.t. the library) need a sequential
decision among themselves, made on their small Gram matrix. Several thresholds are built in one
pass over the data (`build_libraries`): each block is multiplied once with the union of all
libraries. Patterns may be plain rows or `FactoredHAPs` (an affine tap's outputs held through its
input, `patterns.py`); products always take queries (samples) against keys (nodes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from explainlab.io import atomic_path
from explainlab.methods.library.patterns import (
    Patterns,
    compute_dtype,
    pattern_dim,
    unit_rows,
)

HEBBIAN_WIDTH = 0.01  # g(x) = exp(-(1 - x) / 0.01), Eq. 2


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold!r} is invalid: a cosine threshold must lie in (-1, 1].")
    return float(threshold)


MapUnits = Callable[[int, Callable[[int], torch.Tensor]], list[torch.Tensor]]


def _sequential(n_units: int, work: Callable[[int], torch.Tensor]) -> list[torch.Tensor]:
    return [work(u) for u in range(n_units)]


def _n_blocks(n: int, size: int) -> int:
    return -(-n // size)


def _blocks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _is_novel(max_sim: torch.Tensor, threshold: float) -> torch.Tensor:
    """max_sim < θ. At θ = 1, cosines within a few ulp of 1 count as duplicates (not novel)."""
    novel = max_sim < threshold
    if threshold >= 1.0:
        novel &= max_sim < 1.0 - 8 * torch.finfo(max_sim.dtype).eps
    return novel


def _sequential_accept(gram: torch.Tensor, threshold: float) -> list[int]:
    """Indices i (in order) accepted by: i is accepted iff its cosine with every earlier accepted
    candidate is below θ. `gram` is the candidates' (c, c) cosine matrix."""
    conflict = (~_is_novel(gram, threshold)).cpu().numpy()
    np.fill_diagonal(conflict, False)
    blocked = np.zeros(len(conflict), dtype=bool)
    accepted = []
    i = 0
    while i < len(conflict):
        accepted.append(i)
        blocked |= conflict[i]
        free = np.flatnonzero(~blocked[i + 1 :])
        if not len(free):
            break
        i += 1 + int(free[0])
    return accepted


class _GrowingRows:
    """Row buffer with amortised O(1) appends (capacity doubles), for the union of library nodes."""

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.data = torch.empty(64, dim, dtype=dtype, device=device)
        self.size = 0

    def append(self, rows: torch.Tensor) -> None:
        need = self.size + len(rows)
        if need > len(self.data):
            grown = torch.empty(
                max(need, 2 * len(self.data)), self.data.shape[1], dtype=self.data.dtype, device=self.data.device
            )
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = rows
        self.size = need

    @property
    def rows(self) -> torch.Tensor:
        return self.data[: self.size]


def _hebbian(cosines: torch.Tensor) -> torch.Tensor:
    """g(x) = exp(-(1 - x)/0.01) of Eq. 2."""
    return torch.exp((cosines - 1.0) / HEBBIAN_WIDTH)


def _answers(dnn_pred: torch.Tensor, n_classes: int, like: torch.Tensor) -> torch.Tensor:
    """O^k of Eq. 2 as rows (B, n_classes): +1 at the DNN's answer, -1 elsewhere."""
    one_hot = torch.nn.functional.one_hot(dnn_pred.to(like.device).long(), n_classes).to(like.dtype)
    return 2 * one_hot - 1


class HebbianSums:
    """Hebbian links (Eq. 2) of the union of libraries, summed from construction's own products.

    Library nodes are training samples, so construction already compares every sample with the
    nodes stored before it, and (by symmetry of the cosine) every new node with the nodes stored
    before it. Pass one of these to `build_libraries(..., hebbian=sums)` and then to
    `associate_libraries(..., hebbian=sums)`: only the pairs construction never formed (a sample
    stored in no library against nodes stored after its block) are left to compute, instead of
    all N x |union| pairs. At high θ, where most samples are stored, that is a small fraction.

    dnn_pred: (N,) the DNN's answer per training sample; n_classes: number of classes.
    After construction: links (n_classes, U) partial sums, pending (R,) indices of the samples in
    no library, pending_from (R,) the first union position each still has to be compared with.
    """

    def __init__(self, dnn_pred: torch.Tensor, n_classes: int) -> None:
        self.dnn_pred, self.n_classes = dnn_pred, n_classes

    def _start(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        if len(self.dnn_pred) != n:
            raise ValueError(f"haps ({n}) and dnn_pred ({len(self.dnn_pred)}) differ in length.")
        self._links = _GrowingRows(self.n_classes, dtype, device)  # transposed: (U, n_classes)
        self._node_answers = _GrowingRows(self.n_classes, dtype, device)
        self._pending: list[torch.Tensor] = []
        self._pending_from: list[torch.Tensor] = []

    def _add_block(
        self, rows: slice, queries: torch.Tensor, sims: torch.Tensor | None, new_rows: torch.Tensor, keys: torch.Tensor
    ) -> None:
        """rows: the block; queries (B, D); sims (B, U_before) against the nodes stored so far;
        new_rows: block rows stored now (sorted); keys (B, D) of the block."""
        answers = _answers(self.dnn_pred[rows], self.n_classes, queries)
        before = self._links.size
        if sims is not None:  # block samples -> earlier nodes
            self._links.data[:before] += _hebbian(sims).T @ answers
        if len(new_rows):
            # every block sample -> the new nodes (themselves included), and the earlier nodes as
            # samples -> the new nodes, with the cosines of the new nodes' own rows of `sims`
            new = _hebbian(keys[new_rows] @ queries.T) @ answers
            if sims is not None:
                new += _hebbian(sims[new_rows]) @ self._node_answers.rows
            self._links.append(new)
            self._node_answers.append(answers[new_rows])
        stored = torch.zeros(len(queries), dtype=torch.bool, device=queries.device)
        stored[new_rows] = True
        rejected = (~stored).nonzero().flatten().cpu() + rows.start
        self._pending.append(rejected)
        self._pending_from.append(torch.full((len(rejected),), self._links.size, dtype=torch.long))

    def _finish(self) -> None:
        self.links = self._links.rows.T.cpu()  # small (n_classes, U); on the CPU, ready to broadcast
        self.pending = torch.cat(self._pending) if self._pending else torch.zeros(0, dtype=torch.long)
        self.pending_from = torch.cat(self._pending_from) if self._pending else torch.zeros(0, dtype=torch.long)
        del self._links, self._node_answers, self._pending, self._pending_from


def build_libraries(
    haps: Patterns,
    thresholds: Sequence[float],
    *,
    block_size: int = 4096,
    device: torch.device | str | None = None,
    allow_zero: bool = False,
    progress: bool = False,
    hebbian: HebbianSums | None = None,
) -> dict[float, torch.Tensor]:
    """Node indices (into `haps`) of the library of each threshold, built in one pass over the data.

    haps: (N, ...) patterns in data set order, any scale (rows are L2-normalised here), on the CPU
        or the device, or `FactoredHAPs`; float16 inputs are computed in float32.
    hebbian: also sum the Hebbian links of the union of nodes from the products made here (see
        `HebbianSums`; complete them with `associate_libraries(..., hebbian=...)`).
    Returns {θ: LongTensor of sample indices, increasing}. Memory: a (block, D) slice and one
    (block, |union of libraries|) similarity matrix at a time; never (N, |L|).
    """
    thresholds = [_check_threshold(t) for t in thresholds]
    device = torch.device(device) if device is not None else haps.device
    dtype = compute_dtype(haps)
    union = _GrowingRows(pattern_dim(haps), dtype, device)  # keys of the nodes
    members = {t: torch.zeros(0, dtype=torch.bool, device=device) for t in thresholds}  # masks over union
    nodes: dict[float, list[torch.Tensor]] = {t: [] for t in thresholds}
    if hebbian is not None:
        hebbian._start(len(haps), dtype, device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(haps), desc="library construction", leave=False, unit="pattern")
    # Adaptive block: the candidates' Gram matrix costs (candidates^2 x D), so blocks shrink while
    # most samples are novel (early on, high θ) and grow to `block_size` once few are.
    step, start = min(block_size, 256), 0
    while start < len(haps):
        sl = slice(start, min(start + step, len(haps)))
        start = sl.stop
        x, keys = unit_rows(haps[sl], device=device, dtype=dtype, allow_zero=allow_zero)
        # Zero rows exist only with allow_zero (else unit_rows refused them); they are never stored.
        valid = x.abs().amax(1) > 0 if allow_zero else torch.ones(len(x), dtype=torch.bool, device=device)
        sims = x @ union.rows.T if union.size else None
        accepted: dict[float, torch.Tensor] = {}
        most_candidates = 0
        for t in thresholds:
            cand = valid
            if sims is not None and members[t].any():
                cand = valid & _is_novel(sims[:, members[t]].amax(1), t)
            cand = cand.nonzero().flatten()
            most_candidates = max(most_candidates, len(cand))
            # gram[i, j]: earlier candidate i as a node (key) against later candidate j (query)
            accepted[t] = cand[_sequential_accept(keys[cand] @ x[cand].T, t)] if len(cand) else cand
        if bar is not None:
            bar.update(len(x))
        share = most_candidates / len(x)
        if share < 0.25:
            step = min(2 * step, block_size)
        elif share > 0.5:
            step = max(step // 2, 64)
        new_rows = torch.unique(torch.cat(list(accepted.values())))  # sorted block rows
        if hebbian is not None:
            hebbian._add_block(sl, x, sims, new_rows, keys)
        if not len(new_rows):
            continue
        position = torch.full((len(x),), -1, dtype=torch.long, device=device)
        position[new_rows] = torch.arange(union.size, union.size + len(new_rows), device=device)
        union.append(keys[new_rows])
        for t in thresholds:
            grown = torch.zeros(union.size, dtype=torch.bool, device=device)
            grown[: len(members[t])] = members[t]
            grown[position[accepted[t]]] = True
            members[t] = grown
            nodes[t].append(accepted[t].cpu() + sl.start)
    if bar is not None:
        bar.close()
    if hebbian is not None:
        hebbian._finish()
    return {t: torch.cat(nodes[t]) if nodes[t] else torch.zeros(0, dtype=torch.long) for t in thresholds}


class LibraryNetwork:
    """Library of novel hidden activation patterns of one layer (paper 001, Eq. 1-3).

    threshold: a pattern is stored iff its largest cosine similarity to the library is below it,
        in (-1, 1].
    block_size: samples compared with the library per matrix product (memory vs speed).
    device: where the products run (default: where the inputs are).
    allow_zero: accept all-zero patterns (similarity 0 to everything, never stored) instead of
        refusing them.

    Learned state: nodes_ (L, D) unit vectors, node_index_ (L,) indices of the stored samples,
    links_ (n_classes, L) Hebbian functional connections W^F (after `associate`).
    """

    def __init__(
        self,
        threshold: float,
        *,
        block_size: int = 4096,
        device: torch.device | str | None = None,
        allow_zero: bool = False,
    ) -> None:
        self.threshold = _check_threshold(threshold)
        self.block_size, self.device, self.allow_zero = block_size, device, allow_zero

    # -- construction (Eq. 1) ---------------------------------------------------------------------
    def fit(self, haps: Patterns, dnn_pred: torch.Tensor | None = None, n_classes: int | None = None) -> LibraryNetwork:
        """haps: (N, ...) training patterns in data set order (or `FactoredHAPs`). Sets node_index_
        and nodes_ (L, D). With dnn_pred (N,), the DNN's answers, also the Hebbian links (`associate`;
        n_classes defaults to max(dnn_pred) + 1). Several thresholds at once: `build_libraries` then
        `associate_libraries` (one pass for all)."""
        index = build_libraries(
            haps, [self.threshold], block_size=self.block_size, device=self.device, allow_zero=self.allow_zero
        )[self.threshold]
        self.set_nodes(haps[index], index)
        if dnn_pred is None:
            return self
        return self.associate(haps, dnn_pred, n_classes if n_classes is not None else int(dnn_pred.max()) + 1)

    def set_nodes(self, node_haps: Patterns, index: torch.Tensor) -> LibraryNetwork:
        """Install an already-selected library (e.g. from `build_libraries`): node_haps (L, ...)."""
        if len(index) == 0:
            raise ValueError("the library is empty: no pattern was stored (all inputs refused or absent).")
        device = self.device if self.device is not None else node_haps.device
        keys = torch.empty(len(index), pattern_dim(node_haps), dtype=compute_dtype(node_haps), device=device)
        for sl in _blocks(len(keys), self.block_size):  # block by block: no full-size temporaries
            keys[sl] = unit_rows(node_haps[sl], device=device, what="library nodes", queries=False)[1]
        self._nodes = keys
        self._union = self._cols = None
        self.node_index_ = index.cpu()
        return self

    @property
    def nodes_(self) -> torch.Tensor:
        """Node patterns (L, D), unit vectors (a copy when this library shares a union of nodes); for
        `FactoredHAPs` the nodes' keys (right factors divided by |h|)."""
        self._check_fitted()
        return self._nodes if self._nodes is not None else self._union[self._cols]

    def share_nodes(self, union: torch.Tensor, cols: torch.Tensor, index: torch.Tensor) -> LibraryNetwork:
        """Use columns `cols` of a shared node matrix `union` (U, D) instead of a copy of them
        (`associate_libraries`); index: the stored samples' indices (L,)."""
        self._nodes, self._union, self._cols, self.node_index_ = None, union, cols, index.cpu()
        return self

    @property
    def union_(self) -> torch.Tensor | None:
        """The shared node matrix (U, D) this library uses columns of, or None (own nodes)."""
        return self._union

    @property
    def columns_(self) -> torch.Tensor | None:
        """Columns of `union_` that are this library's nodes (L,), or None (own nodes)."""
        return self._cols

    @property
    def _reference(self) -> torch.Tensor:
        return self._nodes if self._nodes is not None else self._union

    @property
    def size_(self) -> int:
        return len(self.node_index_)

    def similarities(self, haps: Patterns) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield (rows, cosines (B, L)) block by block: h^k of Eq. 1 for every node."""
        self._check_fitted()
        for sl in _blocks(len(haps), self.block_size):
            yield sl, self._cosines(haps[sl])

    # -- Hebbian links (Eq. 2) --------------------------------------------------------------------
    def associate(
        self, haps: Patterns, dnn_pred: torch.Tensor, n_classes: int, *, map_units: MapUnits = _sequential
    ) -> LibraryNetwork:
        """W^F[m, n] = Σ_k g(h_n^k) O_m^k with g(x) = exp(-(1 - x)/0.01), O^k = +1 at the DNN's
        answer and -1 elsewhere. haps (N, ...), dnn_pred (N,) class indices. Sets links_ (n_classes, L).

        The sum runs over blocks of `block_size` samples, block partials added in block order;
        `map_units(n, fn)` may compute the blocks elsewhere (e.g. on DDP ranks) with equal results.
        """
        self._check_fitted()
        if len(haps) != len(dnn_pred):
            raise ValueError(f"haps ({len(haps)}) and dnn_pred ({len(dnn_pred)}) differ in length.")

        def block_links(unit: int) -> torch.Tensor:
            sl = slice(unit * self.block_size, (unit + 1) * self.block_size)
            g = _hebbian(self._cosines(haps[sl]))
            return _answers(dnn_pred[sl], n_classes, g).T @ g

        links = torch.zeros(n_classes, self.size_, dtype=self._reference.dtype, device=self._reference.device)
        for partial in map_units(_n_blocks(len(haps), self.block_size), block_links):
            links += partial.to(links.device)
        self.links_ = links
        self.n_classes_ = n_classes
        return self

    def complete_links(self, haps: Patterns, sums: HebbianSums, map_units: MapUnits = _sequential) -> LibraryNetwork:
        """links_ = construction's partial sums (`HebbianSums`) + the pairs construction never
        formed: each sample in no library against the nodes stored after its block."""
        keys, size = self._reference, self.size_
        if self._nodes is None or sums.links.shape != (sums.n_classes, size):
            raise ValueError("these Hebbian sums were not made while building this union of libraries.")

        def block_links(unit: int) -> torch.Tensor:
            rows = sums.pending[unit * self.block_size : (unit + 1) * self.block_size]
            first = sums.pending_from[unit * self.block_size : (unit + 1) * self.block_size].to(keys.device)
            out = keys.new_zeros(sums.n_classes, size)
            low = int(first.min())  # samples come in data set order, so this is first[0]
            if low < size:
                x = unit_rows(haps[rows], device=keys.device, dtype=keys.dtype, allow_zero=self.allow_zero, keys=False)[
                    0
                ]
                later = torch.arange(low, size, device=keys.device).unsqueeze(0) >= first.unsqueeze(1)
                g = _hebbian(x @ keys[low:].T) * later
                out[:, low:] = _answers(sums.dnn_pred[rows], sums.n_classes, g).T @ g
            return out

        links = sums.links.to(keys).clone()
        for partial in map_units(_n_blocks(len(sums.pending), self.block_size), block_links):
            links += partial.to(links.device)
        self.links_, self.n_classes_ = links, sums.n_classes
        return self

    # -- prediction (Eq. 3) -----------------------------------------------------------------------
    def predict_scores(self, haps: Patterns, top_k: int = 3, *, map_units: MapUnits = _sequential) -> torch.Tensor:
        """P (N, n_classes): P_m = Σ_{a in top_k nodes} W^F[m, a] · h_a (Eq. 3)."""
        if not hasattr(self, "links_"):
            raise RuntimeError("call associate() before predict_scores().")
        k = min(top_k, self.size_)

        def block_scores(unit: int) -> torch.Tensor:
            sims = self._cosines(haps[unit * self.block_size : (unit + 1) * self.block_size])
            values, idx = sims.topk(k, dim=1)
            return torch.einsum("bk,mbk->bm", values, self.links_[:, idx])

        parts = map_units(_n_blocks(len(haps), self.block_size), block_scores)
        return torch.cat([p.to(self.links_.device) for p in parts])

    def _cosines(self, haps: Patterns) -> torch.Tensor:
        ref = self._reference
        if pattern_dim(haps) != ref.shape[1]:
            raise ValueError(
                f"patterns of width {pattern_dim(haps)} do not match this library's nodes (width {ref.shape[1]}); "
                "a library built from factored taps (FactoredHAPs) takes factored patterns of the same tap, "
                "and one built from plain patterns takes plain ones."
            )
        x = unit_rows(haps, device=ref.device, dtype=ref.dtype, allow_zero=self.allow_zero, keys=False)[0]
        if self._nodes is not None:
            return x @ self._nodes.T
        return (x @ self._union.T)[:, self._cols]

    def predict(self, haps: Patterns, top_k: int = 3) -> torch.Tensor:
        """Predicted class per pattern, (N,)."""
        return self.predict_scores(haps, top_k).argmax(1)

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, layer: str, model_hash: str) -> Path:
        """Write nodes, indices, θ, links (if any), layer and model hash (weights-only file, atomic)."""
        self._check_fitted()
        state = {
            "format": 1,
            "threshold": self.threshold,
            "layer": layer,
            "model_hash": model_hash,
            "nodes": self.nodes_.cpu(),
            "node_index": self.node_index_,
        }
        if hasattr(self, "links_"):
            state["links"] = self.links_.cpu()
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, layer: str, model_hash: str, **kwargs) -> LibraryNetwork:
        """Read a saved library; refuse one built for another layer or model."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path} is not a readable library file: {err}") from err
        if state.get("layer") != layer or state.get("model_hash") != model_hash:
            raise ValueError(
                f"{path} holds a library of layer {state.get('layer')!r} of model "
                f"{state.get('model_hash')!r}, not of layer {layer!r} of model {model_hash!r}."
            )
        lib = cls(state["threshold"], **kwargs)
        lib._nodes, lib._union, lib._cols, lib.node_index_ = state["nodes"], None, None, state["node_index"]
        if "links" in state:
            lib.links_, lib.n_classes_ = state["links"], state["links"].shape[0]
        return lib

    def _check_fitted(self) -> None:
        if getattr(self, "_nodes", None) is None and getattr(self, "_union", None) is None:
            raise RuntimeError("this LibraryNetwork is not fitted: call fit() first.")


def associate_libraries(
    haps: Patterns,
    indices: dict[float, torch.Tensor],
    dnn_pred: torch.Tensor,
    n_classes: int,
    *,
    block_size: int = 4096,
    device: torch.device | str | None = None,
    allow_zero: bool = False,
    map_units: MapUnits = _sequential,
    hebbian: HebbianSums | None = None,
) -> dict[float, LibraryNetwork]:
    """Fitted and associated libraries for several thresholds from one pass of Hebbian sums.

    A node's links (Eq. 2) depend only on the node's pattern, not on θ, so the links of every
    library are columns of the links of the union of their nodes: one (N, |union|) product
    instead of one (N, |L_θ|) product per θ. indices: {θ: node indices} as `build_libraries` returns.
    hebbian: the sums `build_libraries(..., hebbian=...)` made for these indices; then only the
    pairs construction did not form are computed (same links up to summation order).
    """
    union, position = torch.unique(torch.cat(list(indices.values())), return_inverse=True)
    if not len(union):
        raise ValueError("the libraries are empty: no pattern was stored.")
    everything = LibraryNetwork(1.0, block_size=block_size, device=device, allow_zero=allow_zero)
    everything.set_nodes(haps[union], union)
    if hebbian is None:
        everything.associate(haps, dnn_pred, n_classes, map_units=map_units)
    else:
        if hebbian.n_classes != n_classes or not torch.equal(hebbian.dnn_pred.cpu(), dnn_pred.cpu()):
            raise ValueError("the Hebbian sums were made for other DNN answers or another number of classes.")
        everything.complete_links(haps, hebbian, map_units)
    libraries, start = {}, 0
    for t, idx in indices.items():
        cols = position[start : start + len(idx)].to(everything.nodes_.device)
        start += len(idx)
        lib = LibraryNetwork(t, block_size=block_size, device=device, allow_zero=allow_zero)
        lib.share_nodes(everything.nodes_, cols, idx)
        lib.links_, lib.n_classes_ = everything.links_[:, cols], n_classes
        libraries[t] = lib
    return libraries


def predict_scores_many(libraries: dict, haps: Patterns, top_k: int, *, map_units: MapUnits = _sequential) -> dict:
    """{key: P (N, n_classes)} for libraries that share one union of nodes (`associate_libraries`):
    one (block, |union|) product per block serves every library. Others are predicted one by one."""
    libs = list(libraries.values())
    union = libs[0].union_ if libs else None
    if union is None or any(lib.union_ is not union for lib in libs):
        return {key: lib.predict_scores(haps, top_k, map_units=map_units) for key, lib in libraries.items()}
    first = libs[0]

    def block_scores(unit: int) -> torch.Tensor:
        rows = haps[unit * first.block_size : (unit + 1) * first.block_size]
        x = unit_rows(rows, device=union.device, dtype=union.dtype, allow_zero=first.allow_zero, keys=False)[0]
        sims = x @ union.T
        out = []
        for lib in libs:
            values, idx = sims[:, lib.columns_].topk(min(top_k, lib.size_), dim=1)
            out.append(torch.einsum("bk,mbk->bm", values, lib.links_[:, idx]))
        return torch.stack(out)

    parts = map_units(_n_blocks(len(haps), first.block_size), block_scores)
    stacked = torch.cat([p.to(union.device) for p in parts], dim=1)
    return {key: stacked[i] for i, key in enumerate(libraries)}
