"""The options of `method=heatmaps` (conf/method/heatmaps.yaml), each checked in the constructor before
any work starts (a wrong value is refused naming its key and the allowed values), and the images they
select (data set images or files, optionally only those every model classifies correctly)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from explainlab.data.image_files import load_image_files, resize_images
from explainlab.errors import ConfigValueError, ExplainlabError, check_choice, check_float, check_int
from explainlab.methods.heatmaps import LINKAGES, evaluation
from explainlab.methods.heatmaps.attribution import METHODS
from explainlab.methods.heatmaps.perturbation import FILLS, REGIONS
from explainlab.methods.heatmaps.perturbation import ORDERS as AOPC_ORDERS
from explainlab.methods.heatmaps.sanity import MEASURES
from explainlab.methods.heatmaps.sanity import ORDERS as RANDOMISATION_ORDERS
from explainlab.methods.heatmaps.similarity import gaussian_window_size
from explainlab.models.build import MODEL_NAMES
from explainlab.runner.context import RunContext

SOURCES = ("run", "akamaster", "torchvision")
RANDOMISATION = ("none", "first", "all")
DENDROGRAMS = ("mean", "per_image")
SSIM_DEFAULTS = {"gaussian": True, "sigma": 1.5, "window": None}
IMAGES_FROM = ("dataset", "files")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    """The image files of `folder` (suffixes IMAGE_SUFFIXES, any case), sorted by name."""
    return sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


class HeatmapOptions:
    """Heat maps of `models` x `methods` on the same images (paper 003).

    models: [{name, trained}] with trained in SOURCES ('run': the run's model, trained by its recipe
    or from the cache; 'akamaster': published CIFAR ResNets; 'torchvision': weights=DEFAULT, skipped
    offline with the file to fetch). images: how many of `split`'s first images, or a list of dataset
    indices; images_from: 'dataset' or 'files' (image files required: presets on ImageNet models);
    image_paths / image_folder: image files instead (a list; a folder's files in name order, the first
    `images`); image_labels: their class indices (else unknown, -1); image_size: resize every image to
    this side. keep_only_correct: only images every model classifies correctly (round 2).
    target: 'predicted' or a class index. ssim: {gaussian, sigma, window} of every SSIM.
    linkages: clustering.LINKAGES per image and on the mean; dendrograms: 'mean' or 'per_image'.
    aopc_steps / patch / aopc_fill / aopc_regions / aopc_orders: region perturbation. sparsity: the
    Gini / area table. insertion_deletion (+ _steps): Petsiuk et al.'s curves. randomisation: 'none',
    'first' or 'all' models (true / false stand for 'first' / 'none'), with randomisation_orders,
    randomisation_layers (at most, from the top), randomisation_measures and hog_cell.
    data_randomisation: the run's model against the same architecture trained on permuted labels.
    """

    def __init__(self, models: Sequence[Mapping[str, Any]], methods: Sequence[str] = METHODS, *,
                 images: int | Sequence[int] = 8, image_paths: Sequence[str] | None = None,
                 images_from: str = "dataset", image_folder: str | None = None,
                 image_labels: Sequence[int] | None = None, image_size: int | None = None, split: str = "test",
                 target: str | int = "predicted",
                 keep_only_correct: bool = False, ssim: Mapping[str, Any] | None = None,
                 linkages: Sequence[str] = ("ward_1-ssim", "average_1-ssim", "ward_maps"),
                 dendrograms: str = "mean", aopc_steps: int = 16, patch: int = 4, aopc_fill: str = "uniform",
                 aopc_regions: str = "grid", aopc_orders: Sequence[str] = ("morf", "random"), sparsity: bool = True,
                 insertion_deletion: bool = False, insertion_deletion_steps: int = 32,
                 randomisation: str | bool = "first", randomisation_orders: Sequence[str] = ("cascading",),
                 randomisation_layers: int = 6, randomisation_measures: Sequence[str] = MEASURES, hog_cell: int = 8,
                 data_randomisation: bool = False,
                 occlusion_window: int = 8, ig_steps: int = 32, progress: bool = True,
                 num_classes: int | None = None) -> None:  # fmt: skip
        self.models = [dict(_plain(m)) for m in models]
        if not self.models:
            raise ConfigValueError("method.models", [], "at least one {name, trained} entry")
        for i, entry in enumerate(self.models):
            check_choice(f"method.models[{i}].trained", entry.get("trained"), SOURCES)
            check_choice(f"method.models[{i}].name", entry.get("name"), MODEL_NAMES)
        for method in methods:
            check_choice("method.methods", method, METHODS)
        if isinstance(images, int):
            check_int("method.images", images, minimum=1)
        else:
            images = list(images)
            for index in images:
                check_int("method.images[]", index, minimum=0)
            if not images and not image_paths:
                raise ConfigValueError("method.images", images, "a count >= 1 or a non-empty list of dataset indices")
        check_int("method.image_size", image_size, minimum=8, optional=True)
        check_choice("method.split", split, ("train", "val", "test"))
        index = not isinstance(target, bool) and isinstance(target, int) and 0 <= target < (num_classes or 1 << 62)
        if target != "predicted" and not index:
            raise ConfigValueError("method.target", target, f"'predicted' or a class index in [0, {num_classes})")
        check_choice("method.keep_only_correct", keep_only_correct, (True, False))
        self._check_files(images, images_from, image_paths, image_folder, image_labels, keep_only_correct)
        self.ssim = self._ssim(ssim)
        for name in linkages:
            check_choice("method.linkages", name, LINKAGES)
        check_choice("method.dendrograms", dendrograms, DENDROGRAMS)
        check_int("method.aopc_steps", aopc_steps, minimum=1)
        check_int("method.patch", patch, minimum=1)
        check_choice("method.aopc_fill", aopc_fill, FILLS)
        check_choice("method.aopc_regions", aopc_regions, REGIONS)
        for order in aopc_orders:
            check_choice("method.aopc_orders", order, AOPC_ORDERS)
        check_choice("method.sparsity", sparsity, (True, False))
        check_choice("method.insertion_deletion", insertion_deletion, (True, False))
        check_int("method.insertion_deletion_steps", insertion_deletion_steps, minimum=1)
        if isinstance(randomisation, bool):
            randomisation = "first" if randomisation else "none"
        check_choice("method.randomisation", randomisation, RANDOMISATION)
        for order in randomisation_orders:
            check_choice("method.randomisation_orders", order, RANDOMISATION_ORDERS)
        check_int("method.randomisation_layers", randomisation_layers, minimum=1)
        for measure in randomisation_measures:
            check_choice("method.randomisation_measures", measure, MEASURES)
        check_int("method.hog_cell", hog_cell, minimum=1)
        check_choice("method.data_randomisation", data_randomisation, (True, False))
        if data_randomisation and not any(m["trained"] == "run" for m in self.models):
            raise ConfigValueError("method.data_randomisation", True, "false unless method.models holds the run's "
                                   "model (trained: run), which is trained again on permuted labels by its recipe")
        check_int("method.occlusion_window", occlusion_window, minimum=1)
        check_int("method.ig_steps", ig_steps, minimum=1)
        self.methods, self.images, self.split, self.target = list(methods), images, split, target
        self.image_paths = list(image_paths) if image_paths else None
        self.images_from, self.image_folder = images_from, image_folder
        self.image_labels = list(image_labels) if image_labels is not None else None
        self.image_size, self.keep_only_correct = image_size, keep_only_correct
        self.linkages, self.dendrograms = list(linkages), dendrograms
        self.aopc_steps, self.patch, self.aopc_fill, self.aopc_orders = aopc_steps, patch, aopc_fill, list(aopc_orders)
        self.aopc_regions, self.sparsity = aopc_regions, sparsity
        self.insertion_deletion, self.insertion_deletion_steps = insertion_deletion, insertion_deletion_steps
        self.randomisation, self.randomisation_orders = randomisation, list(randomisation_orders)
        self.randomisation_layers, self.randomisation_measures = randomisation_layers, list(randomisation_measures)
        self.hog_cell, self.data_randomisation = hog_cell, data_randomisation
        self.occlusion_window, self.ig_steps, self.progress = occlusion_window, ig_steps, progress

    @staticmethod
    def _check_files(images: int | Sequence[int], images_from: str, paths: Sequence[str] | None, folder: str | None,
                     labels: Sequence[int] | None, keep_only_correct: bool) -> None:  # fmt: skip
        """Image files: a folder that exists and holds images, labels one per file, and files at all
        where `images_from` is 'files' (the ImageNet presets: the project cannot ship the photos)."""
        check_choice("method.images_from", images_from, IMAGES_FROM)
        if paths and folder:
            raise ConfigValueError("method.image_folder", folder, "null when method.image_paths is given")
        if images_from == "files" and not (paths or folder):
            raise ConfigValueError(
                "method.image_folder", folder, "a folder of image files (the first method.images in name order; "
                "e.g. ImageNet validation photos for the ImageNet presets, which the project cannot ship) or "
                "method.image_paths=[a.jpg,...]")  # fmt: skip
        if folder is not None:
            if not Path(folder).expanduser().is_dir() or not image_files(folder):
                raise ConfigValueError("method.image_folder", folder, "a folder holding image files ("
                                       + ", ".join(IMAGE_SUFFIXES) + ")")  # fmt: skip
            if not isinstance(images, int):
                raise ConfigValueError("method.images", images, "a count with method.image_folder")
        if labels is not None:
            for label in labels:
                check_int("method.image_labels[]", label, minimum=0)
            count = len(paths) if paths else None
            if count is not None and len(labels) != count:
                raise ConfigValueError("method.image_labels", list(labels), f"one class index per file ({count})")
        if keep_only_correct and (paths or folder) and labels is None:
            raise ConfigValueError("method.keep_only_correct", True, "false, or method.image_labels for the image "
                                   "files (their classes, to check the models' answers against)")  # fmt: skip

    @staticmethod
    def _ssim(ssim: Mapping[str, Any] | None) -> dict[str, Any]:
        """{gaussian, sigma, window}: a Gaussian window of std sigma (its side follows from sigma; window
        null or that side) or a uniform window x window one (null: 7)."""
        given = dict(_plain(ssim) or {})
        unknown = sorted(set(given) - set(SSIM_DEFAULTS))
        if unknown:
            raise ConfigValueError("method.ssim", unknown, "keys among gaussian, sigma, window")
        out = SSIM_DEFAULTS | given
        check_choice("method.ssim.gaussian", out["gaussian"], (True, False))
        check_float("method.ssim.sigma", out["sigma"], low=0.0, high=1e3, closed=False)
        window = out["window"]
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 3
                                   or window % 2 == 0):  # fmt: skip
            raise ConfigValueError("method.ssim.window", window, "an odd integer >= 3 or null")
        if out["gaussian"] and window is not None and window != gaussian_window_size(out["sigma"]):
            raise ConfigValueError("method.ssim.window", window, f"null or {gaussian_window_size(out['sigma'])} "
                                   f"(a Gaussian window's side follows from sigma={out['sigma']})")  # fmt: skip
        return out

    def check_image_size(self, size: Sequence[int]) -> None:
        """Refuse, before any map is computed, what the images (H, W) are too small for."""
        side = min(size)
        window = self.ssim["window"] or (gaussian_window_size(self.ssim["sigma"]) if self.ssim["gaussian"] else 7)
        if side < window:
            raise ConfigValueError("method.ssim", self.ssim, f"a window of at most {side} pixels (the images' side)")
        if self.patch > side:
            raise ConfigValueError("method.patch", self.patch, f"at most {side} (the images' side)")
        if self.insertion_deletion and side <= 10:
            raise ConfigValueError("method.insertion_deletion", True, f"false for {side}-pixel images (insertion "
                                   "starts from a blur of 21 x 21 pixels, sigma 5)")  # fmt: skip
        sanity = self.randomisation != "none" or self.data_randomisation
        if sanity and "hog" in self.randomisation_measures and side < 3 * self.hog_cell:
            raise ConfigValueError("method.hog_cell", self.hog_cell, f"at most {side // 3} for {side}-pixel images "
                                   "(a HOG block is 3 x 3 cells), or drop 'hog' from method.randomisation_measures")

    def _images(self, ctx: RunContext, models: Mapping[str, nn.Module],
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[str]]:  # fmt: skip
        """Images (N, C, H, W) in [0, 1], their labels (-1 where unknown) and sources (file or
        `split[index]`). A count of images is clipped to what there is; explicit indices must lie in the
        split. keep_only_correct: the first `images` of them that every model classifies correctly."""
        if self.image_paths or self.image_folder:
            paths = self.image_paths or image_files(self.image_folder)
            if self.image_labels is not None and len(self.image_labels) != len(paths):
                raise ConfigValueError("method.image_labels", self.image_labels, f"one class index per file "
                                       f"({len(paths)} in {self.image_folder})")  # fmt: skip
            labels = torch.tensor(self.image_labels if self.image_labels is not None else [-1] * len(paths))
            size = self.image_size or 224
            wanted = len(paths) if self.image_paths else self.images

            def load(chunk: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
                key = "method.image_paths" if self.image_paths else "method.image_folder"
                return load_image_files([paths[i] for i in chunk], size, key=key), labels[chunk]

            candidates, source = list(range(len(paths))), (lambda i: str(paths[i]))
        else:
            dataset = ctx.datamodule.dataset(self.split)
            candidates = list(range(len(dataset))) if isinstance(self.images, int) else self.images
            wanted = self.images if isinstance(self.images, int) else len(self.images)
            outside = [i for i in candidates if i >= len(dataset)]
            if outside:
                expected = f"indices below {len(dataset)} (the {self.split} split)"
                raise ConfigValueError("method.images", outside, expected)

            def load(chunk: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
                x, y = dataset.__getitems__(chunk)
                return (resize_images(x, self.image_size) if self.image_size else x), y

            source = lambda i: f"{self.split}[{i}]"  # noqa: E731
        kept = candidates[:wanted] if not self.keep_only_correct else self._correct(models, candidates, wanted,
                                                                                    load, device)  # fmt: skip
        x, labels = load(kept)
        return x, labels, [source(i) for i in kept]

    def _correct(self, models: Mapping[str, nn.Module], candidates: list[int], wanted: int, load: Any,
                 device: torch.device) -> list[int]:  # fmt: skip
        """The first `wanted` candidates that every model classifies correctly, read in chunks."""
        kept: list[int] = []
        for start in range(0, len(candidates), 256):
            chunk = candidates[start : start + 256]
            x, labels = load(chunk)
            with torch.no_grad():
                predicted = torch.stack([m.to(device)(x.to(device)).argmax(1).cpu() for m in models.values()])
            kept += [i for i, ok in zip(chunk, evaluation.correct_everywhere(predicted, labels).tolist()) if ok]
            if len(kept) >= wanted:
                break
        if not kept:
            raise ExplainlabError("no image is classified correctly by every model (method.keep_only_correct)")
        return kept[:wanted]
