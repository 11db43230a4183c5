"""Greedy generation (MODEL-5) and the ``lite-llm generate`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lite_llm.cli import main
from lite_llm.spec.configs import resolve_config
from lite_llm.reference.generate import generate, greedy_token
from lite_llm.reference.model import forward
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.errors import NonFiniteError, RouterWeightsError, TokenError, UnknownTierError

ALL = (0, 1, 2)


@pytest.fixture(scope="module")
def tiny():
    cfg = resolve_config("tiny")
    return cfg, init_model_weights(cfg, 0)


def test_generation_is_the_greedy_loop_over_forward(tiny):
    """MODEL-5.1: each new token is the first argmax of the last position's logits of a full forward
    over the prompt and the tokens so far (np.argmax returns the first maximum)."""
    cfg, w = tiny
    prompt = [5, 17, 200]
    got = generate(cfg, w, prompt, 6, ALL)
    seq = list(prompt)
    for _ in range(6):
        seq.append(int(np.argmax(forward(cfg, w, seq, ALL).logits[-1])))
    assert got == seq[3:] and len(got) == 6 and all(isinstance(t, int) for t in got)


def test_generation_is_deterministic_and_depends_on_the_tierset(tiny):
    cfg, w = tiny
    a = generate(cfg, w, [1, 2, 3], 5, ALL, seed=7)
    assert a == generate(cfg, w, [1, 2, 3], 5, ALL, seed=7)
    assert generate(cfg, w, [1, 2, 3], 0, ALL) == []
    outs = {tuple(generate(cfg, w, [9, 8, 7, 6], 6, ts)) for ts in [(0,), (1,), (2,), ALL]}
    assert len(outs) > 1                                     # the TierSet reaches the output


def test_greedy_ties_go_to_the_lowest_id():
    """MODEL-5.2: the smallest id among equal largest logits; -0.0 equals +0.0; inf is a value."""
    assert greedy_token(np.array([0.5, 2.0, 1.0, 2.0], np.float32)) == 1
    assert greedy_token(np.array([-0.0, 0.0, -1.0], np.float32)) == 0
    assert greedy_token(np.array([-1.0, 0.0, -0.0], np.float32)) == 1
    assert greedy_token(np.array([3.0, np.inf, np.inf])) == 1
    assert greedy_token(np.full(7, -3.5)) == 0
    with pytest.raises(NonFiniteError, match="token id 2") as e:
        greedy_token(np.array([1.0, 2.0, np.nan]))
    assert e.value.clause == "MODEL-5.2"


def test_all_equal_logits_generate_token_zero(tiny):
    """MODEL-5.2 end to end: a zero final norm makes every logit 0, so every step picks id 0."""
    cfg, w = tiny
    flat = {**w, "final_norm": np.zeros_like(w["final_norm"])}
    assert np.all(forward(cfg, flat, [4, 5], ALL).logits == 0)
    assert generate(cfg, flat, [4, 5], 4, ALL) == [0, 0, 0, 0]


@pytest.mark.parametrize("prompt, n, needle", [
    ([], 2, "prompt is empty"),
    ([[1, 2]], 2, "one sequence"),
    ([1, 2], -1, "non-negative integer"),
    ([1, 2], 2.0, "non-negative integer"),
    ([1, 2], True, "non-negative integer"),
    ([1, 2], 63, "65 exceeds max_seq_len=64"),
    ([1, 999], 2, "token id 999 at position 1"),
])
def test_bad_requests_are_rejected_before_generating(tiny, prompt, n, needle):
    """MODEL-5.3: E_TOKEN, before the first step."""
    cfg, w = tiny
    with pytest.raises(TokenError) as e:
        generate(cfg, w, prompt, n, ALL)
    assert e.value.code == "E_TOKEN" and needle in str(e.value), str(e.value)


def test_weights_and_tierset_are_checked_before_generating(tiny):
    cfg, w = tiny
    with pytest.raises(UnknownTierError):
        generate(cfg, w, [1], 2, ("tier_9t",))
    with pytest.raises(RouterWeightsError, match="lm_head"):
        generate(cfg, {k: v for k, v in w.items() if k != "lm_head"}, [1], 2, ALL)


# ---------------------------------------------------------------------------------------------
# lite-llm generate

def test_cli_prints_the_generated_tokens(tiny, capsys):
    cfg, w = tiny
    assert main(["generate", "--config", "tiny", "--weights-seed", "0", "--prompt", "1,2,3", "--max-new", "5",
                 "--tierset", "all"]) == 0
    expect = generate(cfg, w, [1, 2, 3], 5, ALL)
    assert capsys.readouterr().out.strip() == ",".join(map(str, expect))
    assert main(["generate", "--prompt", "1,2,3", "--max-new", "3", "--tierset", "exclusive:tier_10b", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row == {"prompt": [1, 2, 3], "generated": generate(cfg, w, [1, 2, 3], 3, (1,)), "tierset": ["tier_10b"]}


def test_cli_errors_are_clear(capsys):
    assert main(["generate", "--prompt", "1,x"]) == 2
    assert "E_TOKEN" in capsys.readouterr().err
    assert main(["generate", "--prompt", "1,2", "--max-new", "70"]) == 2
    assert "max_seq_len" in capsys.readouterr().err
    assert main(["generate", "--prompt", "1", "--checkpoint", "x", "--config", "tiny"]) == 2
    assert "not both" in capsys.readouterr().err


def test_cli_generates_from_a_checkpoint(tiny, tmp_path, capsys):
    """--checkpoint DIR loads config and the TierSet's shards (CKPT chapter) and generates the same tokens."""
    from lite_llm.reference.checkpoint import save_checkpoint

    cfg, w = tiny
    save_checkpoint(tmp_path / "ckpt", cfg, w)
    for ts, ids in (("all", ALL), ("cumulative:tier_10b", (0, 1))):
        assert main(["generate", "--checkpoint", str(tmp_path / "ckpt"), "--prompt", "7,8", "--max-new", "4",
                     "--tierset", ts]) == 0
        assert capsys.readouterr().out.strip() == ",".join(map(str, generate(cfg, w, [7, 8], 4, ids)))
