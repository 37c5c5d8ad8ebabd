"""CLI error handling: one line naming the problem, exit code 2, nothing half-written."""
import subprocess
import sys

import pytest

from cohep.cli import main


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_data_file(tmp_path, capsys):
    code, err = run_cli(["run", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.count("\n") == 0 and "nope" in err and "Traceback" not in err


def test_corrupt_data_file(tmp_path, capsys):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(b"\x1f\x8bgarbage")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    code, err = run_cli(["run", "--data", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "t10k-images" in err and err.count("\n") == 0


def test_unknown_model(tmp_path, capsys, mnist_dir):
    code, err = run_cli(["run", "--data", str(mnist_dir), "--model", "resnet9000", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "resnet9000" in err and "mnist_cnn" in err  # lists the known ones


def test_more_learners_than_samples(tmp_path, capsys, mnist_dir):
    code, err = run_cli(["run", "--data", str(mnist_dir), "--limit", "20", "--holdout", "4", "-n", "9",
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "learners" in err
    assert not (tmp_path / "o" / "records.csv").exists()


@pytest.mark.parametrize("value", ["1.5", "-0.2"])
def test_threshold_out_of_range(tmp_path, capsys, value, mnist_dir):
    code, err = run_cli(["run", "--data", str(mnist_dir), "--threshold", value, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "threshold" in err


def test_unreachable_rpc(tmp_path, capsys, mnist_dir):
    code, err = run_cli(["run", "--data", str(mnist_dir), "--limit", "300", "--holdout", "100", "-r", "1",
                         "--rpc", "http://127.0.0.1:9", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "127.0.0.1:9" in err and err.count("\n") == 0
    assert not (tmp_path / "o" / "records.csv").exists()


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[vote]\nthreshold = 7\n")
    code, err = run_cli(["run", "--config", str(cfg), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "vote.threshold" in err


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cohep", "run", "--data", str(tmp_path / "absent")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("cohep: error:") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, named", [
    (["train", "--bogus"], "--bogus"),
    (["run", "--learners", "many"], "--learners"),
    (["no-such-command"], "no-such-command"),
])
def test_usage_errors_are_one_line_naming_the_option(args, named, capsys):
    code, err = run_cli(args, capsys)
    assert code == 2 and err.count("\n") == 0 and named in err and "--help" in err


def test_help_still_exits_zero(capsys):
    assert main(["--help"]) == 0 and "simulate" in capsys.readouterr().out


def test_bad_lr_schedule_names_the_field(tmp_path, capsys, mnist_dir):
    code, err = run_cli(["run", "--data", str(mnist_dir), "--lr-schedule", "steps", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "train.lr_schedule" in err and err.count("\n") == 0
    assert not (tmp_path / "o").exists()
