"""What a newcomer gets wrong first, each met with one line and exit 2 (or made to work):

* a wrong RPC URL (nothing listening, a name that does not resolve, something that is not an
  Ethereum node) fails within seconds, not after minutes of retries;
* a key without funds: ``deploy`` and ``node`` say which address needs how much before sending;
* a chain that mines only on transactions (plain ``anvil``) is named, with how to start it;
* ``deploy --store http://...`` says how to publish a folder instead of a traceback; with
  ``--store DIR --public-url URL`` it works;
* no ``--seed``: deploy draws one, prints it and records it in the experiment file;
* ``s3://`` stores out of the box, against a real S3-API server process (moto's server mode);
* ``status --watch`` without a terminal prints plain lines.
"""
from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from cohep.ledger.anvil import Anvil, dev_private_keys, free_port

PASSWORD = "newcomer"


def cohep(*args, env=None, timeout=120):
    full = dict(os.environ, COHEP_KEYSTORE_PASSWORD=PASSWORD, COHEP_PROGRESS="0", **(env or {}))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cohep", *args], capture_output=True, text=True, env=full,
                          timeout=timeout)
    return proc, time.monotonic() - start


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A funded dev key (Anvil's account 0), an empty key, and two member addresses."""
    from cohep.run import keys as keymod

    root = tmp_path_factory.mktemp("keys")
    rich, empty = root / "rich.json", root / "empty.json"
    keymod.create(rich, PASSWORD, private_key=dev_private_keys(1)[0], kdf_n=2**10)
    keymod.create(empty, PASSWORD, kdf_n=2**10)
    return {"rich": rich, "empty": empty, "empty_address": keymod.address_of(empty)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import numpy as np

    from cohep.testing.synthetic import synthetic_digits

    x, y = synthetic_digits(60, seed=0)
    path = tmp_path_factory.mktemp("data") / "sample.npz"
    np.savez(path, x=x, y=y)
    return path


MEMBERS = ["--member", "0x" + "01" * 20, "--member", "0x" + "02" * 20]


def deploy_args(data, rpc, keystore, store, out, *extra):
    return ("deploy", "--data", str(data), "--rpc", rpc, "--keystore", str(keystore), "--store", str(store),
            *MEMBERS, "--model", "mnist_cnn", "--out", str(out), *extra)


# -- the RPC URL ---------------------------------------------------------------------------------


class _NotJsonRpc(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the standard library's name
        body = b"<html>a web page</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web_page():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotJsonRpc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def clock_chain(tmp_path_factory):
    """Anvil with blocks on a clock, as docs/nodes.md starts it."""
    with Anvil(block_time=0.5, accounts=4, log=tmp_path_factory.mktemp("anvil") / "anvil.log") as anvil:
        yield anvil


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, clock_chain, keys, data):
    """``cohep deploy`` with no --seed, the initial weights in a folder announced at an http URL."""
    root = tmp_path_factory.mktemp("deployed")
    members = ["--member", f"{keys['empty_address']}=http://127.0.0.1:9/a", "--member", "0x" + "02" * 20]
    proc, _ = cohep("deploy", "--data", str(data), "--rpc", clock_chain.url, "--keystore", str(keys["rich"]),
                    "--store", str(root / "shared"), "--public-url", "http://127.0.0.1:8799/shared", *members,
                    "--model", "mnist_cnn", "--proposal-window", "2", "--vote-window", "2", "--rounds", "3",
                    "--out", str(root / "experiment.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, proc


def test_a_wrong_rpc_url_fails_in_seconds_and_says_why(tmp_path, keys, data, web_page, deployed):
    closed = f"http://127.0.0.1:{free_port()}"
    for rpc, why in [(closed, "nothing listens there"), ("http://no-such-host.invalid:8545", "does not resolve"),
                     (web_page, "not an Ethereum node")]:
        proc, took = cohep(*deploy_args(data, rpc, keys["rich"], tmp_path / "s", tmp_path / "e.json", "--seed", "1"))
        line = error_line(proc)
        assert proc.returncode == 2 and why in line and rpc in line, line
        assert took < 30, f"{rpc}: {took:.0f} s"
        assert not (tmp_path / "s").exists()  # nothing written before the chain answered
    experiment = deployed[0] / "experiment.json"
    proc, took = cohep("node", "--experiment", str(experiment), "--keystore", str(keys["rich"]), "--data", str(data),
                       "--rpc", closed, "--out", str(tmp_path / "node"))
    line = error_line(proc)
    assert proc.returncode == 2 and "nothing listens there" in line and took < 30, (line, took)
    proc, _ = cohep("status", "--experiment", str(experiment), "--rpc", closed)
    assert proc.returncode == 2 and "nothing listens there" in error_line(proc)


# -- the seed, and a store announced at an http URL ------------------------------------------------


def test_deploy_draws_the_seed_prints_it_and_records_it(deployed, clock_chain, keys, data, tmp_path):
    from cohep.run.experiment_file import Experiment

    root, proc = deployed
    exp = Experiment.read(root / "experiment.json")
    seed = exp.config.experiment.seed
    assert f"seed {seed} (drawn" in proc.stdout, proc.stdout
    assert exp.initial_uri.startswith("http://127.0.0.1:8799/shared/") and exp.shared_store == "http://127.0.0.1:8799/shared"
    assert (root / "shared" / f"{exp.initial_digest}.safetensors").is_file()  # written into the served folder
    again, _ = cohep(*deploy_args(data, clock_chain.url, keys["rich"], tmp_path / "s", tmp_path / "e.json"))
    assert again.returncode == 0, again.stderr
    other = Experiment.read(tmp_path / "e.json")
    assert other.config.experiment.seed != seed and other.initial_digest != exp.initial_digest
    given, _ = cohep(*deploy_args(data, clock_chain.url, keys["rich"], tmp_path / "s", tmp_path / "f.json", "--seed", "7"))
    assert given.returncode == 0 and "drawn" not in given.stdout
    assert Experiment.read(tmp_path / "f.json").config.experiment.seed == 7


@pytest.mark.slow  # a cohep process: its imports take seconds
def test_deploy_to_an_http_store_says_how_in_one_line(tmp_path, keys, data):
    proc, took = cohep(*deploy_args(data, "http://127.0.0.1:9", keys["rich"], "http://example.org/cohep", tmp_path / "e.json"))
    line = error_line(proc)
    assert proc.returncode == 2 and "read-only" in line and "--public-url http://example.org/cohep" in line, line


# -- funds ---------------------------------------------------------------------------------------


def test_an_empty_key_is_told_how_much_it_needs(deployed, clock_chain, keys, data, tmp_path):
    proc, _ = cohep(*deploy_args(data, clock_chain.url, keys["empty"], tmp_path / "s", tmp_path / "e.json", "--seed", "1"))
    line = error_line(proc)
    assert proc.returncode == 2 and keys["empty_address"] in line and "needs" in line and "ETH" in line, line
    assert "Insufficient funds" not in line and not (tmp_path / "e.json").exists()
    proc, _ = cohep("node", "--experiment", str(deployed[0] / "experiment.json"), "--keystore", str(keys["empty"]),
                    "--data", str(data), "--rpc", clock_chain.url, "--out", str(tmp_path / "node"))
    line = error_line(proc)
    assert proc.returncode == 2 and keys["empty_address"] in line and "round(s) left" in line, line


def test_the_raw_insufficient_funds_error_is_translated(clock_chain):
    from web3.exceptions import Web3Exception

    from cohep.ledger import Chain
    from cohep.ledger.chain import funds_error

    key = "0x" + "5a" * 32
    chain = Chain.connect(clock_chain.url, 1, private_keys=[key])
    with pytest.raises((Web3Exception, ValueError)) as raw:
        chain.w3.eth.send_transaction({"from": chain.accounts[0], "to": chain.accounts[0], "value": 1})
    assert "nsufficient funds" in str(raw.value)
    line = str(funds_error(raw.value, chain.accounts[0]))
    assert chain.accounts[0] in line and "too little ETH" in line
    assert funds_error(ValueError("execution reverted: not a member"), chain.accounts[0]) is None


def test_the_deployment_gas_bound_holds():
    """DEPLOY_GAS is what the balance check asks for: the real deployment must stay under it."""
    from web3 import Web3

    from cohep.ledger import Chain, Coordinator
    from cohep.run.deploy import deploy_gas

    with Anvil(accounts=1) as anvil:
        chain = Chain.connect(anvil.url, 1, private_keys=dev_private_keys(1))
        for n in (2, 12):
            members = [Web3.to_checksum_address(f"0x{i + 1:040x}") for i in range(n)]
            coord = Coordinator.deploy(chain, members, seed=b"\1" * 32, initial_digest=b"\2" * 32, model_digest=b"\3" * 32)
            assert coord.gas_used <= deploy_gas(n), (n, coord.gas_used, deploy_gas(n))


# -- a chain without a block clock ----------------------------------------------------------------


def test_a_chain_that_mines_only_on_transactions_is_named(tmp_path, keys, data):
    from cohep.config import experiment as config
    from cohep.ledger import Chain
    from cohep.ledger.chain import block_clock_problem
    from cohep.run.deploy import MemberSpec, deploy

    with Anvil(accounts=2) as plain:
        proc, _ = cohep(*deploy_args(data, plain.url, keys["rich"], tmp_path / "s", tmp_path / "e.json", "--seed", "1"))
        line = error_line(proc)
        assert proc.returncode == 2 and "mines only when a transaction arrives" in line and "--block-time 1" in line, line
        # deployed anyway (the library leaves the check to the CLI): the node names it too, at once
        deploy(config.load(None, {"model": {"name": "mnist_cnn"}}), data_path=str(data),
               members=[MemberSpec(keys["empty_address"]), MemberSpec("0x" + "02" * 20)], rpc=plain.url,
               deployer_key=dev_private_keys(1)[0], store=str(tmp_path / "s"), out=tmp_path / "e.json")
        proc, took = cohep("node", "--experiment", str(tmp_path / "e.json"), "--keystore", str(keys["empty"]),
                           "--data", str(data), "--rpc", plain.url, "--out", str(tmp_path / "node"))
        line = error_line(proc)
        assert proc.returncode == 2 and "mines only when a transaction arrives" in line and took < 30, line
        assert block_clock_problem(Chain.connect(plain.url, 0)) is not None


def test_a_chain_with_a_clock_passes(clock_chain):
    from cohep.ledger import Chain
    from cohep.ledger.chain import block_clock_problem

    assert block_clock_problem(Chain.connect(clock_chain.url, 0)) is None


# -- status --watch without a terminal --------------------------------------------------------------


def test_status_watch_prints_plain_lines_without_a_terminal(deployed, clock_chain):
    from cohep.ledger import Chain, Coordinator
    from cohep.run.experiment_file import Experiment

    exp = Experiment.read(deployed[0] / "experiment.json")
    env = dict(os.environ, COHEP_PROGRESS="0")
    watch = subprocess.Popen([sys.executable, "-m", "cohep", "status", "--experiment", str(deployed[0] / "experiment.json"),
                              "--rpc", clock_chain.url, "--watch", "--interval", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watch.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("round 1:") for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any(line.startswith("round 1:") and line.rstrip().endswith("open") for line in lines), lines
        coord = Coordinator.at(Chain.connect(clock_chain.url, 1, private_keys=dev_private_keys(1)), exp.contract)
        while coord.round() == 0 and time.monotonic() < deadline:  # nobody proposes: round 1 is voided
            try:
                coord.finalize(coord.chain.accounts[0], 0)
            except Exception:  # noqa: BLE001 - the proposal window has not passed yet
                time.sleep(0.5)
        while not any(line.startswith("round 1:") and "void" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any(line.startswith("round 1:") and line.rstrip().endswith("void") for line in lines), lines
        assert lines[0].startswith(exp.name) and not any("\x1b" in line for line in lines)
    finally:
        watch.kill()
        watch.wait()


# -- s3:// against a real S3-API server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server as its own process, and the environment a user sets to point s3fs at it."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start on port {port} (exit {proc.poll()})")
            time.sleep(0.2)
    yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow  # a moto server process and a second Python process
def test_an_s3_store_works_out_of_the_box(s3_server, monkeypatch):
    import fsspec
    import numpy as np

    from cohep.wire.checks import default_max_bytes
    from cohep.wire.fetch import Fetcher
    from cohep.wire.store import WeightStore

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("cohep-bucket")
    weights = {"fc.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "fc.bias": np.zeros(3, dtype=np.float32)}
    store = WeightStore("s3://cohep-bucket/shared")
    digest, uri = store.put(weights)
    assert uri == f"s3://cohep-bucket/shared/{digest.hex()}.safetensors"
    assert np.array_equal(store.get(digest)["fc.weight"], weights["fc.weight"])
    fetched = Fetcher(["s3://cohep-bucket/shared"], default_max_bytes(weights), reference=weights).fetch(uri, digest)
    assert np.array_equal(fetched["fc.weight"], weights["fc.weight"])
    listed = subprocess.run([sys.executable, "-c", "import fsspec; print(fsspec.filesystem('s3').ls('cohep-bucket/shared'))"],
                            capture_output=True, text=True, env=dict(os.environ))
    assert digest.hex() in listed.stdout, listed.stdout + listed.stderr  # a fresh process sees it with the same env


def test_a_seed_from_the_config_or_set_is_not_redrawn(tmp_path):
    from cohep.cli import _seed_given

    with_seed, without = tmp_path / "a.toml", tmp_path / "b.toml"
    with_seed.write_text("[experiment]\nseed = 5\n")
    without.write_text("[experiment]\nrounds = 3\n")
    assert _seed_given(with_seed, {"experiment.seed": None}, [])
    assert _seed_given(None, {"experiment.seed": None}, ["experiment.seed=4"])
    assert _seed_given(None, {"experiment.seed": 0}, [])  # --seed 0 is a choice too
    assert not _seed_given(without, {"experiment.seed": None}, ["experiment.rounds=2"])
    assert not _seed_given(None, {"experiment.seed": None}, [])


def test_writing_into_an_http_store_is_one_line():
    import numpy as np

    from cohep.core.errors import CohepError
    from cohep.wire.store import WeightStore

    with pytest.raises(CohepError, match="read-only.*--public-url http://127.0.0.1:9/x"):
        WeightStore("http://127.0.0.1:9/x").put({"w": np.zeros(2, dtype=np.float32)})
