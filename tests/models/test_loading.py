"""Checkpoints: weights-only loading, clear errors naming the file, published CIFAR ResNets."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from explainlab.errors import CheckpointError
from explainlab.models import build_model, fingerprint, load_weights, pretrained_cifar_resnet
from explainlab.models.loading import AKAMASTER_FILES, check_hash_prefix, pretrained_path


def test_round_trip_with_module_prefix(tmp_path: Path) -> None:
    src = build_model("small_cnn", image_size=8)
    path = tmp_path / "w.th"
    torch.save({"state_dict": {"module." + k: v for k, v in src.net.state_dict().items()}, "best_prec1": 1.0}, path)
    dst = build_model("small_cnn", image_size=8, checkpoint=str(path))
    assert fingerprint(dst) == fingerprint(src)


def test_corrupt_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        build_model("small_cnn", image_size=8, checkpoint=str(path))


def test_pickled_code_is_not_loaded(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(CheckpointError, match="evil.pt.*weights-only"):
        load_weights(build_model("small_cnn", image_size=8).net, path)


def test_mismatched_keys_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "lenet.pt"
    torch.save(build_model("lenet_classic").net.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"lenet.pt does not fit MnistCNN.*shape mismatches: conv1.bias"):
        build_model("mnist_cnn", checkpoint=str(path))


def test_offline_pretrained_without_file_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(CheckpointError, match=r"EXPLAINLAB_MODELS"):
        pretrained_path("resnet44", "akamaster", cache_dir=tmp_path)


def test_published_files_are_checked_against_the_hash_in_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "ok"
    good.mkdir()
    content = b"weights"
    name = f"net-{hashlib.sha256(content).hexdigest()[:8]}.th"
    (good / name).write_bytes(content)
    assert check_hash_prefix(good / name) == good / name
    (good / "resnet44-014dd654.th").write_bytes(b"a truncated download")
    with pytest.raises(CheckpointError, match=r"resnet44-014dd654.th is damaged .*name promises 014dd654"):
        pretrained_path("resnet44", "akamaster", cache_dir=tmp_path, search_dir=str(good))
    # A download hands torch.hub the prefix, which checks it before moving the file in place.
    seen = {}
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, **kw: seen.update(kw) or
                        Path(dst).write_bytes(b""))  # fmt: skip
    pretrained_path("resnet20", "akamaster", cache_dir=tmp_path)
    assert seen["hash_prefix"] == "12fca82f"
    with pytest.raises(CheckpointError, match="is damaged"):  # a bad file in the download cache, on its next use
        pretrained_path("resnet20", "akamaster", cache_dir=tmp_path)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name,published_acc", [("resnet20", 91.73), ("resnet32", 92.63), ("resnet44", 93.10), ("resnet56", 93.39)]
)
def test_published_cifar_resnets_score_their_accuracy(
    shared_models: Path, shared_data: Path, name: str, published_acc: float
) -> None:
    from explainlab.data import CIFAR10DataModule
    from explainlab.runner.activations import predict_logits

    assert (shared_models / AKAMASTER_FILES[name]).is_file()
    model = pretrained_cifar_resnet(name, models_dir=str(shared_models))
    data = CIFAR10DataModule(root=str(shared_data), download=False, verify=False, val_size=0, eval_batch_size=500)
    logits, labels = predict_logits(model, data.loader("test"))
    acc = 100 * float((logits.argmax(1) == labels).float().mean())
    assert abs(acc - published_acc) <= 2.0, acc  # 1,000 test images: about +-0.8 points sampling error
