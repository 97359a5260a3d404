"""Training mechanics: data order, splits, and bit-exact resume after an interruption."""
import numpy as np
import pytest
import torch

from config import Config
from lbvae.pipeline.evaluation import heldout_split, metric_indices
from lbvae.pipeline.runs import CHECKPOINT, BatchOrder, RunSpec
from lbvae.pipeline.training import train
from tiny_data import Squares


def test_batch_order_covers_each_epoch_once_and_is_a_function_of_the_step():
    train_idx = np.arange(100, 150)
    order = BatchOrder(train_idx, batch_size=8, seed=3)
    stream = np.concatenate([order(s) for s in range(25)])          # 4 epochs of 50
    for epoch in range(4):
        assert sorted(stream[50 * epoch:50 * (epoch + 1)]) == list(train_idx)
    assert not np.array_equal(stream[:50], stream[50:100])           # reshuffled per epoch
    assert np.array_equal(BatchOrder(train_idx, 8, 3)(17), order(17))  # no hidden sampler state
    assert not np.array_equal(BatchOrder(train_idx, 8, 4)(0), order(0))


def test_heldout_split_is_fixed_disjoint_and_optional():
    train_a, held_a = heldout_split(1000, 0.05)
    train_b, held_b = heldout_split(1000, 0.05)
    assert np.array_equal(held_a, held_b) and len(held_a) == 50
    assert not set(train_a) & set(held_a) and len(train_a) + len(held_a) == 1000
    train_0, held_0 = heldout_split(1000, 0.0)
    assert len(held_0) == 0 and np.array_equal(train_0, np.arange(1000))


def test_metric_indices_follow_the_studys_draws():
    points = metric_indices(1000, seed=5, n_train=300, n_test=100)
    assert [len(points[k]) for k in ("distinct", "train", "test")] == [5, 300, 100]
    assert all(k * 200 <= i < (k + 1) * 200 for k, i in enumerate(points["distinct"]))
    assert len(set(points["train"]) | set(points["test"])) == 400
    assert np.array_equal(points["train"], metric_indices(1000, 5, 300, 100)["train"])


def _spec(tmp_path, steps=12):
    return RunSpec("beta", "squares", 4.0, 0.0, seed=1, steps=steps, run_dir=tmp_path)


CFG = Config(batch_size=8, loss_window=5, log_interval=4, checkpoint_interval=3, heldout_fraction=0.1)


def test_interrupted_run_resumes_bit_exactly(tmp_path):
    whole = train(_spec(tmp_path / "whole"), CFG, Squares(), torch.device("cpu"))
    with pytest.raises(KeyboardInterrupt):
        train(_spec(tmp_path / "cut"), CFG, Squares(fail_after_reads=8), torch.device("cpu"))
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["step"] in (6, 7)
    resumed = train(_spec(tmp_path / "cut"), CFG, Squares(), torch.device("cpu"))
    assert resumed.step == whole.step == 12
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert torch.equal(whole.window, resumed.window)
    assert [r["train_total"] for r in whole.log] == [r["train_total"] for r in resumed.log]


def test_seeds_give_different_runs_and_training_reduces_the_loss(tmp_path):
    a = train(_spec(tmp_path / "a", steps=30), CFG, Squares(), torch.device("cpu"))
    b = train(RunSpec("beta", "squares", 4.0, 0.0, 2, 30, tmp_path / "b"), CFG, Squares(), torch.device("cpu"))
    assert not torch.equal(a.model.encoder.fc_mu.weight, b.model.encoder.fc_mu.weight)
    assert a.log[-1]["train_recon"] < a.log[0]["train_recon"]
