"""The command line fits the ecosystem: --version, -h, shell completion, ``--set section.field=value``
and ``--print-config`` (the effective settings as TOML), and ``cohep status`` on a run directory."""
import tomllib

import pytest

import cohep
from cohep.cli import _set_value, _settings, main, toml_text


def test_version_flag_short_and_long_and_command(capsys):
    for args in (["--version"], ["-V"], ["version"]):
        assert main(args) == 0
        assert capsys.readouterr().out.strip() == cohep.__version__


@pytest.mark.parametrize("args", [["-h"], ["run", "-h"], ["keys", "new", "-h"]])
def test_short_help_everywhere(args, capsys):
    assert main(args) == 0 and "Usage:" in capsys.readouterr().out


def test_help_lists_shell_completion(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out and "--show-completion" in out and "--version" in out


def test_a_mistyped_command_is_suggested_once(capsys):
    assert main(["simulat"]) == 2
    err = capsys.readouterr().err
    assert err.count("Did you mean 'simulate'?") == 1 and err.count("\n") == 1


@pytest.mark.parametrize("text, value", [
    ("0.5", 0.5), ("3", 3), ("true", True), ('"iid"', "iid"), ("iid", "iid"), ("[1, 2]", [1, 2]),
    ("{a = 1}", {"a": 1}), ('{"a": [1]}', {"a": [1]}), ("runs/x.h5", "runs/x.h5"), ("null", "null"),
])
def test_set_values_are_toml_then_json_then_text(text, value):
    assert _set_value(text) == value


def test_set_comes_after_the_config_file_and_before_the_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nlr = 0.1\nbatch_size = 8\n[vote]\nmargin = 0.01\n")
    settings = _settings(cfg, {"train.lr": 0.3}, sets=["train.lr=0.2", "train.batch_size=16", "data.split=dirichlet"])
    assert (settings.train.lr, settings.train.batch_size, settings.vote.margin) == (0.3, 16, 0.01)
    assert settings.data.split == "dirichlet"


@pytest.mark.parametrize("item, named", [
    ("train.lrr=1", "train.lrr"), ("vote.threshold=7", "vote.threshold"), ("train.lr", "--set"),
    ("nosection=1", "nosection"),
])
def test_a_bad_set_is_one_line_naming_the_field(item, named, capsys, tmp_path):
    assert main(["run", "--set", item, "--print-config", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_print_config_is_the_effective_config_as_toml(tmp_path, capsys):
    from cohep.config.experiment import from_dict

    cfg = tmp_path / "c.toml"
    cfg.write_text('[experiment]\nname = "x"\n[model]\nname = "mnist_cnn"\nparams = {width = 4}\n')
    out = tmp_path / "o"
    args = ["run", "--config", str(cfg), "--set", "experiment.rounds=7", "-n", "5", "--print-config", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    printed = from_dict(tomllib.loads(text))
    expected = _settings(cfg, {"experiment.learners": 5}, sets=["experiment.rounds=7"])
    assert printed == expected and (printed.experiment.rounds, printed.experiment.learners) == (7, 5)
    assert printed.model.params == {"width": 4} and not out.exists()  # nothing ran


@pytest.mark.parametrize("command", ["run", "train", "deploy", "compete"])
def test_every_config_command_takes_set_and_print_config(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--set" in out and "--print-config" in out


def test_toml_text_round_trips_nested_tables_and_arrays():
    doc = {"top": 1, "a": {"s": "q\"uote\n", "f": 1.5, "inf": float("inf"), "b": False, "xs": [1, 2],
                           "rows": [{"name": "e1", "params": {"w": 2}}], "sub": {"k": "v", "deeper": {}}},
           "empty": {}, "odd key": {"x.y": 1}}
    assert tomllib.loads(toml_text(doc)) == doc


def test_status_reads_a_run_directory_and_lines_label_the_time(tmp_path, capsys, mnist_dir, one_torch_thread,
                                                                monkeypatch):
    from cohep.protocol.records import read_csv

    monkeypatch.setenv("COHEP_PROGRESS", "lines")
    out = tmp_path / "o"
    assert main(["run", "--data", str(mnist_dir), "--limit", "300", "--holdout", "100", "-n", "2", "-r", "1",
                 "--no-figure", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "round 1/1: " in err and " s elapsed" in err
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    mean = sum(r.test_accuracy for r in read_csv(out / "records.csv") if r.round == 1) / 2
    assert "mean test acc" in text and f"{mean:.4f}" in text and ("accepted" in text or "rejected" in text)


def test_status_needs_a_run_directory_or_an_experiment(capsys, tmp_path):
    assert main(["status"]) == 2
    assert main(["status", str(tmp_path)]) == 2  # not a run directory: one line
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "manifest" in err


def _options(command, ctx):
    import click

    for p in command.get_params(ctx):
        if isinstance(p, click.Option):
            yield p


def test_a_short_flag_means_one_thing_in_every_command():
    """-n is --learners, -e --experiment, -m --model, -d --data...: never one thing here and another there."""
    import typer.main

    from cohep.cli import app

    group = typer.main.get_command(app)
    meaning: dict[str, tuple[str, str]] = {}

    def walk(cmd, path):
        import click

        ctx = click.Context(cmd, info_name=path)
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")
            return
        for opt in _options(cmd, ctx):
            longs = sorted(o for o in opt.opts if o.startswith("--"))
            for short in (o for o in opt.opts if len(o) == 2 and o.startswith("-")):
                if short in ("-h",):
                    continue
                seen = meaning.setdefault(short, (longs[0], path))
                assert seen[0] == longs[0], f"{short} is {seen[0]} in `{seen[1]}` but {longs[0]} in `{path}`"

    walk(group, "cohep")
    assert meaning["-n"][0] == "--learners" and meaning["-d"][0] == "--data"


def test_train_show_and_evaluate_take_data_as_an_option(tmp_path, capsys):
    from cohep.cli import main

    assert main(["show", "--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "e.png")]) == 2
    err = capsys.readouterr().err
    assert "none.h5" in err and "Traceback" not in err
    assert main(["show", "--out", str(tmp_path / "e.png")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--data", str(tmp_path / "a.h5")]) == 2
