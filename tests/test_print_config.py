"""``--print-config`` works on every command that reads an experiment config, without the flags the
command otherwise requires, and ``--set`` shows in what it prints."""
import tomllib

import click
import pytest
import typer

from cohep.cli import app, main
from cohep.config.experiment import from_dict


def config_commands() -> dict[str, click.Command]:
    """The commands with a ``--config`` option (an experiment TOML), found from the CLI itself."""
    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    return {name: cmd for name, cmd in group.commands.items()
            if any("--config" in p.opts for p in cmd.params if isinstance(p, click.Option))}


def test_every_command_reading_a_config_has_set_and_print_config():
    commands = config_commands()
    assert {"run", "train", "deploy", "compete"} <= set(commands)
    for name, cmd in commands.items():
        opts = {o for p in cmd.params for o in p.opts}
        assert {"--set", "--print-config"} <= opts, name


#: what each command needs besides --print-config: only a command whose config file is required gets one
NEEDS = {"compete": ["--config", "experiments/compete_neutrino_cpu.toml"]}


@pytest.mark.parametrize("name", sorted(set(config_commands()) - {"simulate"}))
def test_print_config_needs_no_other_flag(name, capsys):
    code = main([name, *NEEDS.get(name, []), "--set", "experiment.rounds=9", "--print-config"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = from_dict(tomllib.loads(captured.out))
    assert printed.experiment.rounds == 9


def test_deploy_still_requires_its_flags_without_print_config(capsys):
    assert main(["deploy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Missing option '--data'" in err and "cohep deploy" in err


def test_simulate_prints_its_simulation_config_with_set_applied(capsys, tmp_path):
    """``simulate --config`` reads a simulation configuration, not an experiment's: the same two flags."""
    assert main(["simulate", "--print-config"]) == 0
    plain = tomllib.loads(capsys.readouterr().out)
    assert main(["simulate", "--set", "fsi=false", "--set", "detector.electron_lifetime_ms=3.5",
                 "--print-config"]) == 0
    changed = tomllib.loads(capsys.readouterr().out)
    assert plain["fsi"] is True and changed["fsi"] is False
    assert changed["detector"]["electron_lifetime_ms"] == 3.5
    changed["fsi"] = True
    changed["detector"]["electron_lifetime_ms"] = plain["detector"]["electron_lifetime_ms"]
    assert changed == plain  # nothing else moved
    assert "None" not in str(plain)  # what it prints reads back as a configuration:
    assert main(["simulate", "--print-config"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "sim.toml").write_text(printed)
    assert main(["simulate", "--config", str(tmp_path / "sim.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    assert main(["simulate", "--set", "fsi=maybe", "--print-config"]) == 2
    assert "fsi must be true or false" in capsys.readouterr().err
    assert main(["simulate"]) == 2
    assert "Missing option '--events'" in capsys.readouterr().err
