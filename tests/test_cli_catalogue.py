"""Every subcommand on a catalogue of bad inputs: the right exit status, one clear line, never a traceback.

Each row is (argv, expected exit status, a fragment the error line must contain). Files named
``@NAME`` are made by :func:`files` in a temporary directory. The exit statuses are those of
``lite_llm.exit_codes`` (2 = input rejected or wrong usage). A row that allocated before refusing,
or printed a traceback, fails.
"""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from lite_llm import exit_codes
from lite_llm.cli import main
from lite_llm.spec.configs import config_path

R = exit_codes.REJECTED


def files(tmp) -> dict[str, str]:
    tiny = json.loads(config_path("tiny").read_text())
    out = {}

    def write(name, data, mode="w"):
        p = tmp / name
        (p.write_bytes if mode == "wb" else p.write_text)(data)
        out[name] = str(p)

    write("empty.npy", b"", "wb")
    write("text.npy", "0.5 0.25\n1 2\n")
    buf = tmp / "good.npy"
    np.save(buf, np.ones((4, tiny["d_model"]), np.float32))
    write("truncated.npy", buf.read_bytes()[:-100], "wb")
    write("pickled.npy", pickle.dumps({"a": 1}), "wb")
    np.save(tmp / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    out["objects.npy"] = str(tmp / "objects.npy")
    np.save(tmp / "wrongshape.npy", np.ones((4, 3), np.float32))
    out["wrongshape.npy"] = str(tmp / "wrongshape.npy")
    np.save(tmp / "nan.npy", np.full((2, tiny["d_model"]), np.nan, np.float32))
    out["nan.npy"] = str(tmp / "nan.npy")
    write("float_dmodel.json", json.dumps({**tiny, "d_model": float(tiny["d_model"])}))
    write("bigint.json", json.dumps(tiny).replace(f'"vocab_size": {tiny["vocab_size"]}', '"vocab_size": ' + "9" * 100_000))
    write("deep.json", "[" * 100_000 + "]" * 100_000)
    write("notjson.json", "{tiers: nope")
    huge = {**tiny, "tiers": [{**tiny["tiers"][0], "groups": 2_000_000, "experts_per_group": 2_000_000}]}
    write("huge.json", json.dumps(huge))
    write("budget_bad.json", '{"utility": [1]}')
    out["missing"] = str(tmp / "missing.npy")
    out["nodir"] = str(tmp / "no-such-dir" / "out.npz")
    return out


CATALOGUE = [
    # route
    (["route", "--hidden", "@missing"], R, "does not exist"),
    (["route", "--hidden", "@empty.npy"], R, "empty"),
    (["route", "--hidden", "@text.npy"], R, "not a .npy file"),
    (["route", "--hidden", "@truncated.npy"], R, "truncated"),
    (["route", "--hidden", "@pickled.npy"], R, "not a .npy file"),
    (["route", "--hidden", "@objects.npy"], R, "pickle"),
    (["route", "--hidden", "@wrongshape.npy"], R, "E_SHAPE"),
    (["route", "--hidden", "@nan.npy"], R, "E_NONFINITE"),
    (["route", "--random", "-1"], R, "negative"),
    (["route", "--input-seed", "-1"], R, "negative"),
    (["route", "--show", "-1"], R, "negative"),
    (["route", "--layer", "99"], R, "layers 0.."),
    (["route", "--out", "@nodir"], R, "does not exist"),
    (["route", "--config", "@float_dmodel.json"], R, "E_CONFIG"),
    (["route", "--config", "@bigint.json"], R, "digits"),
    (["route", "--config", "@deep.json"], R, "levels deep"),
    (["route", "--config", "@notjson.json"], R, "not valid JSON"),
    (["route", "--config", "@huge.json"], R, "E_MEMORY"),
    (["route", "--config", "nonexistent-config"], R, "E_CONFIG"),
    (["route", "--tierset", "tier_9z"], R, "E_UNKNOWN_TIER"),
    (["route", "--tierset", "budget:@budget_bad.json"], R, "E_BUDGET"),
    (["route", "--seed", "0xZZ"], R, "E_SEED"),
    (["route", "--seed", "-5"], R, "E_SEED"),
    (["route", "--impl", "jax"], R, "invalid choice"),
    # fidelity
    (["fidelity", "--tokens", "0"], R, ">= 1"),
    (["fidelity", "--tokens", "-3"], R, "negative"),
    (["fidelity", "--hidden", "@missing"], R, "does not exist"),
    (["fidelity", "--hidden", "@wrongshape.npy"], R, "expected (T >= 1"),
    # params and spec
    (["params", "@deep.json"], R, "levels deep"),
    (["params", "tiny", "--tierset", "exclusive:nope"], R, "E_UNKNOWN_TIER"),
    (["spec", "nothing"], R, "invalid choice"),
    # checkpoint
    (["checkpoint", "init", "@ckdir", "--config", "@huge.json", "--seed", "0"], R, "E_MEMORY"),
    (["checkpoint", "init", "@ckdir", "--config", "tiny", "--seed", "-1"], R, "E_SEED"),
    (["checkpoint", "expand", "@missing", "--tier", "t:2:2:8", "--seed", "1"], R, "E_CKPT_MISSING"),
    (["checkpoint", "inspect", "@missing"], R, "E_CKPT_MISSING"),
    (["checkpoint", "verify", "@missing"], exit_codes.FAILED, "NOT valid"),
    (["checkpoint", "expand", "@ck", "--tier", "t:100000:100000:16", "--seed", "1"], R, "E_MEMORY"),
    (["checkpoint", "expand", "@ck", "--tier", "t:x:2:8", "--seed", "1"], R, "must be integers"),
    (["checkpoint", "expand", "@ck", "--tier", "tier_1b:2:2:8", "--seed", "1"], R, "E_"),
    (["checkpoint", "verify", "@ck-bigint"], exit_codes.FAILED, "E_CKPT_SCHEMA"),
    (["checkpoint", "inspect", "@ck-bigint"], R, "E_CKPT_SCHEMA"),
    (["checkpoint", "verify", "@ck-deep"], exit_codes.FAILED, "E_CKPT_HEADER"),
    (["generate", "--prompt", "1", "--checkpoint", "@ck-deep"], R, "E_CKPT_HEADER"),
    (["generate", "--prompt", "1", "--checkpoint", "@ck-deep", "--impl", "optimized"], R, "E_CKPT_HEADER"),
    (["checkpoint", "hashes", "@ck-deep"], R, "E_CKPT_HEADER"),
    # generate
    (["generate", "--prompt", "1,x"], R, "E_TOKEN"),
    (["generate", "--prompt", "1", "--max-new", "-1"], R, "negative"),
    (["generate", "--prompt", "99999999"], R, "E_TOKEN"),
    (["generate", "--prompt", "1", "--config", "@huge.json"], R, "E_MEMORY"),
    (["generate", "--prompt", "1", "--checkpoint", "@missing"], R, "E_CKPT_MISSING"),
    # train, routes, docs, prove
    (["train", "--config", "tiny", "--steps", "-1", "--out", "@nodir"], R, "negative"),
    (["train", "--config", "tiny", "--seed", "0xZZ", "--out", "@nodir"], R, "E_SEED"),
    (["train", "--init", "@missing", "--train-tiers", "x", "--out", "@nodir"], R, "E_CKPT_MISSING"),
    (["routes", "diff", "@missing", "@missing"], R, "no such record file"),
    (["routes", "diff", "@text.npy", "@text.npy"], R, "E_RECORD"),
    (["routes", "record", "--checkpoint", "@missing", "--out", "@nodir"], R, "E_CKPT_MISSING"),
    (["docs", "build", "--site-dir", "@empty.npy"], R, "is a file"),
    (["docs", "build", "--site-dir", "@nodir"], R, "does not exist"),
    (["prove", "--only", "no_such_statement"], R, "no statement"),
    (["checkpoint", "hashes", "@missing"], R, "E_CKPT_MISSING"),
    (["bench", "storage", "--quick", "--trace", "@missing"], R, "not a trace file"),
    # bench, conform, vectors
    (["bench", "router", "--device", "cpu"], R, "--quick"),
    (["bench", "router", "--scenario", "S3", "--quick", "--device", "cpu"], R, "MoE benchmark"),
    (["bench", "router", "--quick", "--device", "cpu", "--json", "@nodir"], R, "does not exist"),
    (["conform", "--impl", "nosuchmodule:Adapter"], R, "cannot import"),
    (["vectors", "nothing"], R, "invalid choice"),
]


def damaged_checkpoints(tmp, good) -> dict[str, str]:
    """Copies of a good checkpoint: a 100,000-digit integer in the manifest; a shard header nested 100,000
    deep (the manifest's size and SHA-256 updated, so the checks reach the header)."""
    import hashlib
    import struct

    out = {}
    big = tmp / "ck-bigint"
    shutil.copytree(good, big)
    m = (big / "manifest.json").read_text()
    (big / "manifest.json").write_text(m.replace('"schema_version": 1', '"schema_version": ' + "1" * 100_000, 1))
    out["ck-bigint"] = str(big)
    deep = tmp / "ck-deep"
    shutil.copytree(good, deep)
    manifest = json.loads((deep / "manifest.json").read_text())
    entry = manifest["tiers"][0]
    shard = deep / entry["file"]
    raw = shard.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = b"[" * 100_000 + b"]" * 100_000
    new = struct.pack("<Q", len(header)) + header + raw[8 + n:]
    shard.write_bytes(new)
    entry["bytes"], entry["sha256"] = len(new), hashlib.sha256(new).hexdigest()
    (deep / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2))
    out["ck-deep"] = str(deep)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("catalogue")
    out = files(tmp)
    assert main(["checkpoint", "init", str(tmp / "ck"), "--config", "tiny", "--seed", "0"]) == 0
    out["ck"] = str(tmp / "ck")
    out["ckdir"] = str(tmp / "new-ck")
    out.update(damaged_checkpoints(tmp, tmp / "ck"))
    return out


def expand(argv, inputs):
    out = []
    for a in argv:
        for key, value in sorted(inputs.items(), key=lambda kv: -len(kv[0])):
            a = a.replace(f"@{key}", value)
        out.append(a)
    return out


@pytest.mark.parametrize("argv, status, fragment", CATALOGUE, ids=[" ".join(r[0])[:60] for r in CATALOGUE])
def test_bad_input_gets_one_clear_line(argv, status, fragment, inputs, capsys):
    try:
        code = main(expand(argv, inputs))
    except SystemExit as e:                      # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    print(f"exit {code}\nstdout: {out[-500:]}\nstderr: {err[-1500:]}")
    assert "Traceback" not in err and "Traceback" not in out
    assert code == status
    assert fragment in err + out
    if status == R:
        lines = [l for l in err.splitlines() if "error" in l]
        assert lines, "a rejection prints an error line"


def test_every_subcommand_is_in_the_catalogue():
    from lite_llm.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {row[0][0] for row in CATALOGUE}
    untested = set(sub.choices) - covered
    assert not untested, f"subcommands with no bad-input row: {sorted(untested)}"


def parsed(monkeypatch, func):
    """Make cli.main run ``func`` as the command (a planted failure inside a real command's arguments)."""
    from lite_llm import cli

    args = cli.build_parser().parse_args(["params", "tiny"])
    args.func = func
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: args})())
    return cli, args


def test_unexpected_exception_is_internal_and_one_line(monkeypatch, capsys):
    def boom(args):
        raise KeyError("planted")

    cli, args = parsed(monkeypatch, boom)
    code = cli.main(["params", "tiny"])
    _, err = capsys.readouterr()
    assert code == exit_codes.INTERNAL
    assert "internal error: KeyError" in err and "--debug" in err and "Traceback" not in err
    args.debug = True
    code = cli.main(["params", "tiny"])
    _, err = capsys.readouterr()
    assert code == exit_codes.INTERNAL and "Traceback" in err


def test_missing_extra_names_the_extra(monkeypatch, capsys):
    def needs_z3(args):
        raise ModuleNotFoundError("No module named 'z3'", name="z3")

    cli, _ = parsed(monkeypatch, needs_z3)
    code = cli.main(["params", "tiny"])
    _, err = capsys.readouterr()
    assert code == exit_codes.REJECTED and "pip install 'lite-llm[proofs]'" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("lite-llm ")
