import argparse

import pytest

from config import DEMO_OVERRIDES, Config, ConfigError, add_config_arguments, from_args, from_dict, validate


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return from_args(parser.parse_args(argv))


def test_defaults_are_the_papers():
    cfg = Config()
    assert cfg.betas == (1, 4, 8, 16, 32) and cfg.lambdas == (0, 2, 4, 6, 8)
    assert cfg.seeds == tuple(range(10)) and cfg.batch_size == 64 and cfg.latent_dim == 10
    assert (cfg.steps, cfg.lambda_steps, cfg.lr, cfg.num_bins) == (150_000, 50_000, 1e-4, 20)
    assert (cfg.metric_train_points, cfg.metric_test_points, cfg.loss_window) == (10_000, 5_000, 5_000)


def test_command_line_overrides_the_issue_example():
    cfg = parse("--beta 1 8 --seeds 0 1 --steps 2000 --datasets dsprites".split())
    assert cfg.betas == (1.0, 8.0) and cfg.seeds == (0, 1) and cfg.steps == 2000
    assert cfg.datasets == ("dsprites",) and cfg.lambdas == Config().lambdas


def test_demo_preset_then_explicit_flags_win():
    cfg = parse(["--demo", "--steps", "7"])
    assert cfg.demo and cfg.source == "standin" and cfg.steps == 7
    assert cfg.betas == DEMO_OVERRIDES["betas"]


@pytest.mark.parametrize("argv, needle", [
    ("--beta -1", "--betas"), ("--lambda nan", "--lambdas"), ("--datasets celebA", "unknown dataset"),
    ("--steps 0", "--steps"), ("--batch-size -4", "--batch-size"), ("--lr 3", "--lr"),
    ("--heldout-fraction 0.7", "--heldout-fraction"), ("--source web", "--source"),
    ("--device tpu", "--device"), ("--seeds 1 1", "duplicates"), ("--mpi3d-variant fake", "--mpi3d-variant"),
])
def test_invalid_values_name_the_setting(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        parse(argv.split())


def test_empty_grid_and_unknown_key_and_wrong_type():
    with pytest.raises(ConfigError, match="--betas is empty"):
        validate(Config(betas=()))
    with pytest.raises(ConfigError, match="unknown setting.*beta_max"):
        from_dict({"beta_max": 3})
    with pytest.raises(ConfigError, match="steps.*wrong type"):
        from_dict({"steps": "many"})


def test_json_round_trip():
    cfg = Config(betas=(1.0, 2.5), seeds=(3,), device="cpu")
    assert from_dict(cfg.to_dict()) == cfg
