"""Keystores unlock only with their password; the experiment file holds nothing private and checks itself."""
import json

import pytest

from cohep.run import keys
from cohep.core.errors import CohepError, DataError
from cohep.run.experiment_file import Experiment, redact_url


def test_keystore_round_trip_and_wrong_password(tmp_path):
    path = tmp_path / "k.json"
    address = keys.create(path, "secret", kdf_n=2**4)
    document = json.loads(path.read_text())
    assert document["crypto"]["kdf"] == "scrypt" and "secret" not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    key = keys.load(path, "secret")
    assert key.address == address == keys.address_of(path)
    assert "private_key" not in repr(key) and key.private_key not in repr(key)
    with pytest.raises(CohepError, match="wrong password"):
        keys.load(path, "guess")
    with pytest.raises(CohepError, match="refusing to overwrite"):
        keys.create(path, "other")


def test_keystore_from_a_known_key_and_bad_files(tmp_path):
    known = "0x" + "11" * 32
    address = keys.create(tmp_path / "k.json", "pw", private_key=known, kdf_n=2**4)
    assert keys.load(tmp_path / "k.json", "pw").private_key == known
    assert address == "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CohepError, match="not a keystore"):
        keys.load(tmp_path / "bad.json", "pw")
    with pytest.raises(CohepError, match="cannot read keystore"):
        keys.load(tmp_path / "none.json", "pw")


def test_password_from_the_environment_or_a_clear_error(monkeypatch):
    monkeypatch.setenv(keys.PASSWORD_ENV, "from-env")
    assert keys.password() == "from-env"
    monkeypatch.delenv(keys.PASSWORD_ENV)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CohepError, match=keys.PASSWORD_ENV):
        keys.password()


@pytest.mark.parametrize("url, shown", [
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ("https://mainnet.example.io/v3/0123456789abcdef", "https://mainnet.example.io/<redacted>"),
    ("https://user:pass@rpc.example.org:8443/?apikey=xyz", "https://rpc.example.org:8443/<redacted>"),
    (None, None),
])
def test_rpc_urls_are_redacted(url, shown):
    assert redact_url(url) == shown


def _experiment_dict():
    from cohep.config.experiment import load, to_toml_dict
    from cohep.models import ModelSpec

    spec = ModelSpec("mnist_cnn", (1, 28, 28), 10)
    return {
        "format": "cohep-experiment-1", "name": "x", "chain_id": 31337, "contract": "0x" + "ab" * 20,
        "deployed_block": 3, "members": [{"address": "0x" + "01" * 20, "store": "http://127.0.0.1:9000"},
                                         {"address": "0x" + "02" * 20, "store": None}],
        "model": spec.to_dict(), "class_names": [str(i) for i in range(10)], "initial_digest": "0" * 63 + "1",
        "initial_uri": "http://127.0.0.1:9000/x.safetensors", "shared_store": "memory://shared",
        "config": to_toml_dict(load(None)), "max_bytes": 10_000,
    }


def test_experiment_file_round_trip_and_allowed_stores(tmp_path):
    exp = Experiment.from_dict(_experiment_dict())
    path = exp.write(tmp_path / "e.json")
    again = Experiment.read(path)
    assert again == exp and again.index_of("0x" + "02" * 20) == 1
    assert again.allowed_stores() == ["http://127.0.0.1:9000", "memory://shared"]
    assert again.store_of(0) == "http://127.0.0.1:9000" and again.store_of(1) == "memory://shared"
    text = path.read_text()
    assert "rpc" not in json.loads(text)["config"].get("chain", {})


@pytest.mark.parametrize("field, value, named", [
    ("format", "other", "format"),
    ("members", [{"address": "0x" + "01" * 20}], "members"),
    ("contract", "0x12", "contract"),
    ("initial_digest", "XYZ", "initial_digest"),
    ("class_names", ["a"], "class_names"),
    ("max_bytes", -1, "max_bytes"),
    ("model", {"name": "mnist_cnn"}, "model"),
])
def test_a_malformed_experiment_file_is_one_line(tmp_path, field, value, named):
    data = _experiment_dict()
    data[field] = value
    (tmp_path / "e.json").write_text(json.dumps(data))
    with pytest.raises(CohepError) as err:
        Experiment.read(tmp_path / "e.json")
    assert named in str(err.value) and "e.json" in str(err.value) and "\n" not in str(err.value)


def test_not_a_member(tmp_path):
    exp = Experiment.from_dict(_experiment_dict())
    with pytest.raises(CohepError, match="is not a member"):
        exp.index_of("0x" + "03" * 20)
    assert isinstance(DataError("x"), CohepError)


@pytest.mark.anvil
def test_a_run_manifest_never_holds_an_rpc_secret(tmp_path, mnist_dir, one_torch_thread):
    """A run against a real node whose URL carries credentials: the manifest keeps host and port only."""
    from cohep.config import experiment as config
    from cohep.ledger.anvil import Anvil
    from cohep.run.local import run_experiment

    with Anvil() as anvil:
        url = f"http://alice:pa55word@127.0.0.1:{anvil.port}/?apikey=0123456789abcdef"
        cfg = config.load(None, {"experiment": {"learners": 2, "rounds": 1}, "chain": {"rpc": url},
                                 "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 200, "holdout": 40},
                                 "model": {"name": "mnist_cnn"}})
        run_experiment(cfg, tmp_path / "run", figure=False)
    text = (tmp_path / "run" / "manifest.json").read_text()
    assert "pa55word" not in text and "0123456789abcdef" not in text and "alice" not in text
    assert f"http://127.0.0.1:{anvil.port}/<redacted>" in text


def test_deploy_refuses_the_degrade_research_switch(tmp_path, mnist_dir):
    from cohep.config import experiment as config
    from cohep.run.deploy import MemberSpec, deploy

    cfg = config.load(None, {"degrade": {"learner": 0, "label_flip": 0.3}})
    members = [MemberSpec("0x" + "01" * 20), MemberSpec("0x" + "02" * 20)]
    with pytest.raises(CohepError, match="degrade"):
        deploy(cfg, data_path=str(mnist_dir), members=members, rpc="http://127.0.0.1:9", deployer_key="0x" + "11" * 32,
               store=str(tmp_path / "s"), out=tmp_path / "e.json")
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "s").exists()


@pytest.mark.anvil
def test_deploy_reads_an_event_file_as_events(tmp_path):
    """``data.kind = auto`` follows the --data file: an HDF5 event file deploys the compact model."""
    from test_train_evaluate import write_event_file

    from cohep.config import experiment as config
    from cohep.run.deploy import MemberSpec, deploy
    from cohep.ledger.anvil import Anvil, dev_private_keys

    data = write_event_file(tmp_path / "events.h5", n=12)
    with Anvil() as anvil:
        exp = deploy(config.load(None), data_path=str(data), members=[MemberSpec("0x" + "01" * 20),
                     MemberSpec("0x" + "02" * 20)], rpc=anvil.url, deployer_key=dev_private_keys(1)[0],
                     store=str(tmp_path / "s"), out=tmp_path / "e.json")
    assert exp.model.name == "compact" and exp.model.input_shape == (3, 32, 32)
    assert exp.config.data.path is None and Experiment.read(tmp_path / "e.json") == exp
