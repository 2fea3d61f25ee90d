"""The numpy-only TF checkpoint reader, checked against the real musicnn bundles."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from psrq.errors import ArtifactError
from psrq.features.musicnn import MusicnnNet, load_musicnn_weights, musicnn_checkpoint_dir
from psrq.features.tf_checkpoint import read_checkpoint, read_index


@pytest.mark.parametrize("variant", ["musicnn-msd", "musicnn-mtt"])
def test_reads_every_tensor_with_consistent_shapes(variant: str) -> None:
    tensors = read_checkpoint(musicnn_checkpoint_dir(variant))
    assert len(tensors) == 150  # 48 variables x (value + 2 Adam slots) + 2 Adam powers + ...
    # The Adam slots were written independently of the variables: equal shapes and plausible
    # values cross-check the parser's offsets and shapes.
    variables = [k for k in tensors if "Adam" not in k and "power" not in k]
    for name in variables:
        if "moving_" in name:
            continue
        assert tensors[f"{name}/Adam"].shape == tensors[name].shape
        assert tensors[f"{name}/Adam_1"].shape == tensors[name].shape
        assert (tensors[f"{name}/Adam_1"] >= 0).all(), "Adam's second moment cannot be negative"
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)  # 7 frames x 40% of 96 mel bands
    assert tensors["dense_1/kernel"].shape == (200, 50)
    variances = [v for k, v in tensors.items() if k.endswith("moving_variance")]
    assert all((v > 0).all() for v in variances)
    assert all(np.isfinite(v).all() for v in tensors.values())


def test_weights_fill_the_network_exactly() -> None:
    net = MusicnnNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    load_musicnn_weights(net, musicnn_checkpoint_dir("musicnn-msd"))
    changed = [
        k
        for k, v in net.state_dict().items()
        if "num_batches" not in k and not (v == before[k]).all()
    ]
    n_params = sum(1 for k in before if "num_batches" not in k)
    assert len(changed) == n_params  # every parameter and BN statistic came from the checkpoint


def test_corrupt_index_raises_naming_the_file(tmp_path: Path) -> None:
    src = musicnn_checkpoint_dir("musicnn-msd")
    broken = tmp_path / "ckpt"
    broken.mkdir()
    data = (src / ".index").read_bytes()
    (broken / ".index").write_bytes(data[:-8] + b"\0" * 8)  # wipe the SSTable magic number
    with pytest.raises(ArtifactError, match=r"ckpt/\.index"):
        read_index(broken / ".index")


def test_missing_data_shard_raises(tmp_path: Path) -> None:
    src = musicnn_checkpoint_dir("musicnn-msd")
    shutil.copy(src / ".index", tmp_path / ".index")
    with pytest.raises(ArtifactError, match="data shard not found"):
        read_checkpoint(tmp_path)


def test_not_a_musicnn_checkpoint_is_rejected() -> None:
    net = MusicnnNet(midend_filters=32)  # a different architecture cannot take these weights
    with pytest.raises(ArtifactError, match="shape"):
        load_musicnn_weights(net, musicnn_checkpoint_dir("musicnn-msd"))
