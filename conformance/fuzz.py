"""Differential fuzzing: ``lite-llm conform --impl X --fuzz N`` (CONF-6.2).

Hypothesis draws N random routing requests (configurations, TierSets, seeds, hidden states with
ties, zeros, subnormals and extreme magnitudes, router weights with tied rows) and requests for the
router's pieces (canonical exp, tree sum, softmax, top-k), runs the reference and X on each, and
compares: bit for bit, or the same rejection code. A difference is shrunk to a minimal request,
which is printed as a runnable Python snippet and written as a case directory that ``lite-llm
conform --vectors DIR --case ID`` reruns.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from .adapters import Request, adapter_name, close_adapter, offers, rejection_code, to_numpy
from .implementations import load_adapter
from .tensors import bits, dtype_name

F32 = np.float32


PIECES = ("canonical_exp", "tree_sum", "softmax", "top_k")
OPERATIONS = ("route",) + PIECES


def strategies(operations=OPERATIONS):
    """The Hypothesis strategy of requests (operation, config, params, inputs) of the given operations."""
    from hypothesis import strategies as st

    f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
    special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0 ** -149, -(2.0 ** -149), 2.0 ** -126, 3.0e38, -3.0e38,
                               float(np.finfo(F32).max), 0.5, 1e-30])
    value = st.one_of(f32, special, st.floats(-4, 4, width=32))

    @st.composite
    def route(draw):
        M = draw(st.integers(1, 4))
        tiers = [(draw(st.integers(1, 4)), draw(st.integers(1, 4))) for _ in range(M)]
        d = 2 * draw(st.integers(1, 8))
        k = tuple(draw(st.integers(1, 4)) for _ in range(3))
        limbs = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))          # TIER-1.5: 3 + 3 is not a config
        T = draw(st.integers(0, 5))
        cfg = {"spec_version": "0.1", "d_model": d, "n_heads": 1, "n_layers": 1,
               "tiers": [{"name": f"t{i}", "groups": g, "experts_per_group": e, "d_ff": 1}
                         for i, (g, e) in enumerate(tiers)],
               "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2], "hidden_limbs": limbs[0],
                          "weight_limbs": limbs[1]}}

        def matrix(shape):
            n = int(np.prod(shape))
            flat = draw(st.lists(value, min_size=n, max_size=n))
            a = np.array(flat, F32).reshape(shape)
            if len(shape) >= 2 and shape[-2] > 1 and draw(st.booleans()):       # tie two rows
                a[..., 1, :] = a[..., 0, :]
            return a

        hidden = matrix((T, d))
        if T > 1 and draw(st.booleans()):
            hidden[-1] = hidden[0]                                             # a repeated token
        inputs = {"hidden": hidden}
        shared_tier_row = matrix((d,)) if draw(st.booleans()) else None        # every tier row equal: level-1 tie
        for t, (g, e) in enumerate(tiers):
            inputs[f"router_tier.{t}"] = shared_tier_row.copy() if shared_tier_row is not None else matrix((d,))
            inputs[f"router_group.{t}"] = matrix((g, d))
            inputs[f"router_expert.{t}"] = matrix((g, e, d))
        tierset = draw(st.lists(st.integers(0, M - 1), min_size=1, max_size=M, unique=True))
        seed = draw(st.one_of(st.integers(0, 2 ** 64 - 1), st.sampled_from([0, 1, 2 ** 53, 2 ** 63, 2 ** 64 - 1])))
        return "route", cfg, {"tierset": tierset, "seed": seed if seed < 2 ** 53 else f"0x{seed:x}"}, inputs

    @st.composite
    def pieces(draw):
        op = draw(st.sampled_from([o for o in PIECES if o in operations]))
        n = draw(st.integers(1, 9))
        if op == "canonical_exp":
            t = draw(st.lists(st.one_of(st.floats(-90, 0, width=32), st.floats(max_value=0, width=32,
                                                                                allow_nan=False)), min_size=1,
                              max_size=40))
            return op, None, {}, {"t": np.array(t, F32)}
        if op == "tree_sum":
            rows = draw(st.lists(st.lists(value, min_size=n, max_size=n), min_size=1, max_size=4))
            return op, None, {}, {"v": np.array(rows, F32)}
        z64 = st.one_of(st.floats(-200, 200), st.sampled_from([0.0, -0.0, 1.0, -87.0, 1e300, -1e300]))
        rows = draw(st.lists(st.lists(z64, min_size=n, max_size=n), min_size=1, max_size=4))
        if op == "softmax":
            return op, None, {}, {"z": np.array(rows, np.float64)}
        keys = np.array(draw(st.lists(st.integers(0, 2 ** 64 - 1), min_size=n, max_size=n, unique=True)), np.uint64)
        return op, None, {"k": draw(st.integers(1, n + 2))}, {"z": np.array(rows, np.float64), "keys": keys}

    unknown = sorted(set(operations) - set(OPERATIONS))
    if unknown or not operations:
        raise ValueError(f"--fuzz-ops: {', '.join(unknown) or 'none given'}; the fuzzer draws {', '.join(OPERATIONS)}")
    parts = ([route(), route()] if "route" in operations else []) + \
        ([pieces()] if any(o in PIECES for o in operations) else [])
    return st.one_of(*parts)


def outcome(adapter, req: Request):
    """('ok', outputs) or ('rejected', code) or ('broken', message)."""
    try:
        out = adapter.run(req)
    except NotImplementedError:
        return "skip", None
    except Exception as e:  # noqa: BLE001
        code = rejection_code(e)
        return ("rejected", code) if code else ("broken", f"{type(e).__name__}: {e}")
    return "ok", {k: to_numpy(v) for k, v in out.items()}


def difference(ref, got) -> str | None:
    """None when the two outcomes agree bit for bit."""
    if ref[0] != got[0]:
        return f"reference {ref[0]} {ref[1] if ref[0] != 'ok' else ''}, implementation {got[0]} " \
               f"{got[1] if got[0] != 'ok' else ''}".strip()
    if ref[0] == "rejected":
        return None if ref[1] == got[1] else f"rejected with {got[1]}, the reference with {ref[1]}"
    if ref[0] == "broken":
        return None
    for k, want in ref[1].items():
        have = got[1].get(k)
        if have is None:
            return f"output {k!r} missing"
        if have.shape != want.shape or have.dtype != want.dtype:
            return f"output {k!r}: {have.dtype}{list(have.shape)}, expected {want.dtype}{list(want.shape)}"
        diff = np.argwhere(bits(have) != bits(want))
        if diff.size:
            i = tuple(int(x) for x in diff[0])
            return f"output {k!r} differs at {list(i)}: got {have[i].item()!r}, expected {want[i].item()!r}"
    return None


def array_literal(a: np.ndarray) -> str:
    """A Python expression rebuilding ``a`` bit for bit."""
    if a.dtype.kind == "f":
        u = {2: "uint16", 4: "uint32", 8: "uint64"}[a.dtype.itemsize]
        return (f"np.array({bits(a).reshape(-1).tolist()}, np.{u}).view(np.{a.dtype.name})"
                f".reshape({tuple(a.shape)})")
    return f"np.array({a.reshape(-1).tolist()}, np.{a.dtype.name}).reshape({tuple(a.shape)})"


def snippet(impl: str, device: str | None, op, cfg, params, inputs) -> str:
    lines = ["import numpy as np", "from lite_llm.spec.adapter import Request",
             "from lite_llm.conformance.implementations import load_adapter",
             "from lite_llm.conformance.fuzz import difference, outcome", "",
             f"config = {json.dumps(cfg)}" if cfg is not None else "config = None",
             f"params = {json.dumps(params)}", "inputs = {"]
    lines += [f"    {k!r}: {array_literal(v)}," for k, v in inputs.items()]
    lines += ["}", f"req = Request('fuzz', {op!r}, config, params, inputs, "
                   f"{ {k: dtype_name(v) for k, v in inputs.items()}!r})",
              "ref = outcome(load_adapter('reference'), req)",
              f"got = outcome(load_adapter({impl!r}, {device or 'cpu'!r}), req)",
              "print(difference(ref, got))"]
    return "\n".join(lines)


def write_reproducer(out_dir: Path, op, cfg, params, inputs) -> str:
    """A case directory for the failing request (expected outputs from the reference); returns its id."""
    from .generate import CaseSpec, write_case

    digest = hashlib.sha256(json.dumps([op, cfg, params], sort_keys=True).encode()
                            + b"".join(v.tobytes() for v in inputs.values())).hexdigest()[:12]
    case_id = f"routing/fuzz/{op.replace('_', '-')}-{digest}"
    ref = outcome(load_adapter("reference"), Request("", op, cfg, params, inputs, {}))
    spec = CaseSpec(case_id, "A minimal request found by `lite-llm conform --fuzz` on which an implementation "
                    "differs from the reference.", ["HSER-7.4"] if op == "route" else ["HSER-6.6"], op, params,
                    inputs, config=cfg, error=ref[1] if ref[0] == "rejected" else None)
    if (out_dir / case_id).exists():
        import shutil

        shutil.rmtree(out_dir / case_id)
    write_case(out_dir, spec)
    return case_id


class FuzzResult:
    """The verdict of a fuzz run: true when the implementation always agreed; ``compared`` counts the
    requests actually compared (0: nothing ran, every drawn request was skipped)."""

    def __init__(self, ok: bool, compared: int):
        self.ok, self.compared = ok, compared

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"FuzzResult(ok={self.ok}, compared={self.compared})"


def run_fuzz(impl: str, device: str | None, n: int, *, seed: int = 0, out_dir=None, label=None, stream=None,
             operations=OPERATIONS, timeout_s: float | None = None, start_timeout_s: float | None = None) -> FuzzResult:
    """Compare ``impl`` with the reference on ``n`` drawn requests; true when they always agree.

    A progress bar (on standard error, only when it is a terminal) counts the drawn requests; a ``cmd:``
    harness gets the runner's timeouts and restarts (CONF-4.9).
    """
    import shlex
    import sys

    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from tqdm import tqdm

    from .runner import open_adapter

    stream = stream or sys.stdout
    ref_adapter = load_adapter("reference")
    target = open_adapter(impl, device, timeout_s=timeout_s, start_timeout_s=start_timeout_s)
    label = label or adapter_name(target)
    failures: list = []
    ran = [0]
    bar = tqdm(total=n, desc=f"fuzz {label}", unit="request", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty(), dynamic_ncols=True)

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategies(tuple(operations)))
    def agree(request):
        if failures:
            bar.set_postfix_str(f"shrinking a difference ({len(failures)} tries)", refresh=False)
        else:
            bar.update(1)
        op, cfg, params, inputs = request
        if not offers(target, op):
            return
        dtypes = {k: dtype_name(v) for k, v in inputs.items()}
        req = Request("fuzz", op, cfg, params, inputs, dtypes)
        ref = outcome(ref_adapter, req)
        if ref[0] == "ok":                 # ask for the reference's outputs, as a case does (CONF-4.4)
            req.outputs = {k: (dtype_name(v), v.shape) for k, v in ref[1].items()}
        got = outcome(target, req)
        if got[0] == "skip":
            return
        ran[0] += 1
        d = difference(ref, got)
        if d is not None:
            failures.append((op, cfg, params, inputs, d))
            raise AssertionError(d)

    print(f"== fuzz {label}: {n} random request(s) against the reference (seed {seed})", file=stream, flush=True)
    try:
        agree()
    except AssertionError:
        bar.close()
        op, cfg, params, inputs, d = failures[-1]           # Hypothesis replays the shrunk example last
        out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="lite-llm-fuzz-"))
        case_id = write_reproducer(out, op, cfg, params, inputs)
        dev = ["--device", device] if device and impl == "optimized" else []
        rerun = " ".join(shlex.quote(x) for x in ["lite-llm", "conform", "--impl", impl, *dev, "--vectors", str(out),
                                                   "--case", case_id])
        print(f"DIFFERENCE ({op}): {d}\n\nminimal reproducer, as a runnable snippet:\n\n"
              f"{snippet(impl, device, op, cfg, params, inputs)}\n\nas a case: {out / case_id}\n"
              f"rerun: {rerun}", file=stream)
        return FuzzResult(False, ran[0])
    finally:
        bar.close()
        close_adapter(target)
    print(f"fuzz {label}: no difference in {ran[0]} compared request(s)", file=stream)
    return FuzzResult(True, ran[0])
