"""Every bad input ends in one clear message naming the setting or file, never a traceback."""
import pytest

import study

GOOD = ["--demo", "--datasets", "dsprites", "--seeds", "0", "--beta", "1", "--steps", "2", "--device", "cpu"]

# (argv for main_beta.py after GOOD, text the message must contain)
CASES = [
    (["--beta", "-1"], "--betas has -1.0"),
    (["--lambda", "-2"], "--lambdas has -2.0"),
    (["--beta", "inf"], "--betas has inf"),
    (["--datasets", "cifar10"], "unknown dataset 'cifar10'"),
    (["--steps", "0"], "--steps is 0"),
    (["--lambda-steps", "-5"], "--lambda-steps is -5"),
    (["--batch-size", "0"], "--batch-size is 0"),
    (["--latent-dim", "0"], "--latent-dim is 0"),
    (["--lr", "0"], "--lr is 0.0"),
    (["--adam-betas", "0.9", "1.5"], "--adam-betas"),
    (["--adam-eps", "0"], "--adam-eps"),
    (["--heldout-fraction", "0.9"], "--heldout-fraction is 0.9"),
    (["--source", "internet"], "--source is 'internet'"),
    (["--device", "tpu"], "--device is 'tpu'"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--seeds", "-1"], "--seeds has -1"),
    (["--seeds", "3", "3"], "--seeds has duplicates"),
    (["--mpi3d-variant", "simulated"], "--mpi3d-variant is 'simulated'"),
    (["--num-bins", "0"], "--num-bins is 0"),
    (["--metric-train-points", "0"], "--metric-train-points is 0"),
    (["--loss-window", "-1"], "--loss-window is -1"),
    (["--checkpoint-interval", "0"], "--checkpoint-interval is 0"),
    (["--steps", "many"], "--steps: invalid int value: 'many'"),
    (["--betta", "4"], "unrecognized arguments: --betta"),
]


@pytest.mark.parametrize("extra, needle", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_setting_is_one_clear_line(extra, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        study.main("beta", GOOD + ["--results-dir", str(tmp_path)] + extra)
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert needle in message[-1]
    assert len(message) == 1 and "Traceback" not in message[0]


def test_results_directory_with_other_settings_or_corrupt_config(tmp_path, capsys):
    root = tmp_path / "betavae_results"
    root.mkdir()
    (root / "config.json").write_text('{"lr": 0.5, "source": "standin"')
    with pytest.raises(SystemExit):
        study.main("beta", GOOD + ["--results-dir", str(tmp_path)])
    assert "config.json is unreadable" in capsys.readouterr().err
    (root / "config.json").write_text('{"lr": 0.5, "source": "standin"}')
    with pytest.raises(SystemExit):
        study.main("beta", GOOD + ["--results-dir", str(tmp_path)])
    assert "was made with lr=0.5, not 0.001" in capsys.readouterr().err
