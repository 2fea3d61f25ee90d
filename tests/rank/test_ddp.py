"""DDP training on 2 real local processes (torchrun, gloo on CPU) against 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from psrq.rank.ddp import local_batches
from psrq.rank.synthetic import make_synthetic_ranking_data
from psrq.serve.ranker import Ranker

pytestmark = pytest.mark.slow  # four short torchrun launches


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory):
    """SYNTHETIC: 150 users, 200 items, text + audio SIDs. One epoch at a small learning rate
    keeps AUC well below 1, so a wrong gradient average would show in the metrics."""
    root = tmp_path_factory.mktemp("ddp_rank")
    return make_synthetic_ranking_data(
        root, n_users=150, n_items=200, events_per_user=20, modalities=("text", "audio"), seed=1
    )


def torchrun(nproc: int, data, out, *extra: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "psrq.rank.ddp",
        "--samples",
        str(data["samples"]),
        "--sids",
        str(data["sids"]),
        "--out",
        str(out),
        "--batch-size",
        "64",
        "--lr",
        "1e-4",
        "--patience",
        "0",
        "--threads",
        "1",
        "--quiet",
        *extra,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONFAULTHANDLER": "1",
    }  # a crash prints its stack
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_two_processes_match_one_and_resume(ddp_data, tmp_path):
    one = torchrun(1, ddp_data, tmp_path / "p1", "--epochs", "2")
    two = torchrun(2, ddp_data, tmp_path / "p2", "--epochs", "2")
    assert two["distributed"] == {"processes": 2, "backend": "gloo"}
    for split in ("valid", "test"):
        a, b = one["metrics"][split], two["metrics"][split]
        assert 0.55 < a["auc"] < 0.995, a  # not saturated: the comparison can fail
        assert abs(a["auc"] - b["auc"]) < 0.002
        assert abs(a["logloss"] - b["logloss"]) < 1e-3
    # Resume: 1 epoch (through `psrq train --nproc 2`), then --resume to 2 epochs, gives the
    # uninterrupted 2-epoch run.
    from typer.testing import CliRunner

    from psrq.cli import app

    cli = CliRunner().invoke(
        app,
        [
            "train",
            "--samples",
            str(ddp_data["samples"]),
            "--sids",
            str(ddp_data["sids"]),
            "--out",
            str(tmp_path / "r"),
            "--batch-size",
            "64",
            "--lr",
            "1e-4",
            "--patience",
            "0",
            "--threads",
            "1",
            "--epochs",
            "1",
            "--nproc",
            "2",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert (
        json.loads((tmp_path / "r" / "metrics.json").read_text())["distributed"]["processes"] == 2
    )
    resumed = torchrun(2, ddp_data, tmp_path / "r", "--epochs", "2", "--resume")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert abs(resumed["metrics"]["test"]["auc"] - two["metrics"]["test"]["auc"]) < 1e-6
    # Rank 0 wrote an ordinary model directory.
    assert Ranker.load(tmp_path / "p2").evaluate(ddp_data["test"])["auc"] == pytest.approx(
        two["metrics"]["test"]["auc"], abs=1e-9
    )


def test_local_batches_tile_the_global_batches():
    """The ranks' local batch i together are positions [i*B, (i+1)*B) of one permutation."""
    n, B = 103, 8
    single = local_batches(n, B, rank=0, world=1, seed=5, epoch=2)
    ranks = [local_batches(n, B, rank=r, world=2, seed=5, epoch=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    for i, batch in enumerate(single[:-1]):  # the last batch differs by the sampler's padding only
        union = torch.cat([ranks[0][i], ranks[1][i]])
        assert sorted(union.tolist()) == sorted(batch.tolist())
    with pytest.raises(Exception, match="divisible"):
        local_batches(n, 9, rank=0, world=2, seed=0, epoch=0)


def test_nccl_gets_dense_tables_and_gloo_keeps_sparse():
    from psrq.rank.ddp import _ddp_config
    from psrq.rank.train import TrainConfig

    config = TrainConfig(model="MCCA")
    assert _ddp_config(config, "nccl").model_params["sparse_embeddings"] is False
    assert "sparse_embeddings" not in _ddp_config(config, "gloo").model_params


def _sparse_average_worker(rank: int, world: int, store_path: str, out_path: str) -> None:
    import torch.distributed as dist

    from psrq.rank.ddp import all_reduce_sparse_gradients

    torch.set_num_threads(1)
    store = dist.FileStore(store_path, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    try:
        table = torch.nn.Parameter(torch.zeros(6, 2))
        if rank == 0:  # rows 1 (twice: uncoalesced) and 4
            table.grad = torch.sparse_coo_tensor(
                torch.tensor([[1, 4, 1]]),
                torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
                (6, 2),
            )
        # rank 1: no row touched (grad None): it still joins the collectives
        all_reduce_sparse_gradients([table], world)
        torch.save(table.grad.to_dense(), f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sparse_gradients_are_averaged_over_ranks_with_an_empty_rank(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(
        _sparse_average_worker,
        args=(2, str(tmp_path / "store"), str(tmp_path / "grad")),
        nprocs=2,
        join=True,
    )
    expected = torch.zeros(6, 2)
    expected[1] = torch.tensor([6.0, 8.0]) / 2
    expected[4] = torch.tensor([3.0, 4.0]) / 2
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"grad.{rank}"), expected)
