"""Proofs that fail when the code is wrong (issue 11, item 2).

An audit planted mutations in the proofs and in the code they cover; three went unnoticed by
``lite-llm prove``. Each test here plants one of them again (a monkeypatched reference function, a
mutated operator, a slot model with one tier slot too many) and asserts that the claim covering it now
fails, after checking that the same claim passes on the real code.
"""
from __future__ import annotations

import json

import pytest

from lite_llm.proofs import active_set_cardinality, backward_compatibility, bounded_active_compute, budget_selection
from lite_llm.proofs import quantization_bounds
from lite_llm.proofs.certificate import COUNTEREXAMPLE, PROVED


def show(c):
    print(f"{c.name}: {c.result} (expected {c.expected})\n  model: {c.model}\n  details: {c.details}")


# --- mutation 1: select_budget replaced by greedy -------------------------------------------------------

def test_enumeration_claim_passes_on_the_reference():
    c = budget_selection.select_vs_enumeration_claim()
    show(c)
    assert c.result == PROVED
    # the instances really tell greedy from the optimum: every generated one, and SEL-3.6's A and B
    assert c.details["instances where greedy_budget is suboptimal"] >= \
        c.details["generated instances (greedy suboptimal by construction)"] + 2


@pytest.mark.parametrize("where", ["select_budget", "select_exact"])
def test_greedy_select_budget_fails_the_proof(monkeypatch, where):
    """select_budget answering with SEL-3's greedy (either the public function or the exact core swapped)."""
    from lite_llm.reference import selection

    if where == "select_budget":
        monkeypatch.setattr(selection, "select_budget", selection.greedy_budget)
    else:
        monkeypatch.setattr(selection, "select_exact", selection.select_greedy)
    c = budget_selection.select_vs_enumeration_claim()
    show(c)
    assert c.result == COUNTEREXAMPLE and not c.ok
    assert c.model["instance"] == "SEL-3.6 instance B (2.87x)"
    assert c.model["enumerated optimum"] == [0, 2, 3] and c.model["select_budget"] == [0, 1]
    cert = budget_selection.prove()
    assert not cert.ok
    assert [x.name for x in cert.claims if not x.ok] == ["select_budget_is_the_enumerated_optimum"]


def test_brute_force_is_independent_of_the_reference():
    """The enumeration gives SEL-2.6's listed answers by itself (no reference code involved)."""
    for U, c, m, tau, mu, want in budget_selection.worked_examples():
        assert budget_selection.brute_force(U, c, m, tau, mu) == want


# --- mutation 2: tier expansion rewriting an old shard --------------------------------------------------

def reinitialising_expand(real):
    """An expansion that also re-initialises tier 0 under the new seed: a new shard file for tier 0 and its
    manifest entry updated (so the checkpoint stays loadable and verifiable)."""
    from lite_llm.reference.checkpoint import MANIFEST, manifest_bytes, read_manifest, tier_entry, write_file_atomic
    from lite_llm.reference.checkpoint import write_shard
    from lite_llm.reference.weights import init_tier_weights

    def expand_checkpoint(path, tier, seed, *, verify=True):
        m = real(path, tier, seed, verify=verify)
        shard = write_shard(m.directory, "tier-" + m.cfg.tiers[0].name, init_tier_weights(m.cfg, seed, 0))
        raw = {**m.raw, "tiers": [tier_entry(m.cfg, 0, shard), *m.raw["tiers"][1:]]}
        write_file_atomic(m.directory / MANIFEST, manifest_bytes(raw))
        return read_manifest(path)

    return expand_checkpoint


def same_bytes_rewriting_expand(real):
    """An expansion that writes an old shard again with the very same bytes (atomic replace): EXP-1.3 says an
    existing shard MUST NOT be written."""
    from lite_llm.reference.checkpoint import read_manifest, write_file_atomic

    def expand_checkpoint(path, tier, seed, *, verify=True):
        m = real(path, tier, seed, verify=verify)
        old = m.directory / m.raw["tiers"][1]["file"]
        write_file_atomic(old, old.read_bytes())
        return read_manifest(path)

    return expand_checkpoint


def test_expansion_claim_passes_on_the_reference():
    c = backward_compatibility.expansion_operator_claim()
    show(c)
    assert c.result == PROVED and c.details["files compared"] == 4      # dense + three tier shards


@pytest.mark.parametrize("mutant, symptom", [
    (reinitialising_expand, "manifest entries of the old tiers changed"),
    (same_bytes_rewriting_expand, "old shard written again (same bytes, new inode or mtime)"),
])
def test_expansion_that_rewrites_an_old_shard_fails_the_proof(monkeypatch, mutant, symptom):
    from lite_llm.reference import expand

    monkeypatch.setattr(expand, "expand_checkpoint", mutant(expand.expand_checkpoint))
    c = backward_compatibility.expansion_operator_claim()
    show(c)
    assert c.result == COUNTEREXAMPLE and not c.ok
    assert symptom in c.model
    if mutant is reinitialising_expand:          # new weights for tier 0: tensors and forward differ too
        assert c.model["forward differs under old TierSet"]["TierSet"] == [0]
        assert any(f.startswith("tensor layers.0.tiers.tier_0") for f in
                   c.model["forward differs under old TierSet"]["fields"])


def test_expansion_that_rewrites_a_shard_in_place_fails_the_proof(monkeypatch):
    """Overwrite the bytes of an old shard file in place (same name, new content): the claim names the file."""
    from lite_llm.reference import expand

    real = expand.expand_checkpoint

    def expand_checkpoint(path, tier, seed, *, verify=True):
        m = real(path, tier, seed, verify=verify)
        old = m.directory / m.raw["tiers"][2]["file"]
        data = bytearray(old.read_bytes())
        data[-1] ^= 1                                  # one bit of the last tensor value
        old.write_bytes(bytes(data))
        return m

    monkeypatch.setattr(expand, "expand_checkpoint", expand_checkpoint)
    c = backward_compatibility.expansion_operator_claim()
    show(c)
    assert c.result == COUNTEREXAMPLE
    assert c.model["old shard rewritten (bytes differ)"].startswith("tier-tier_2")
    assert c.model["loading or forward fails under old TierSet"]["error"].startswith("E_CKPT_HASH")


# --- mutation 3: one tier slot too many in the active-set model -----------------------------------------

def test_slot_model_with_one_tier_slot_too_many_fails_count_formula(monkeypatch):
    """Tier slot i filled when i <= |T| (instead of i < |T|): with |T| < k_tier one slot too many is filled.
    at_most_K and exactly_K_when_enough_candidates cannot see it (their right sides are constants and the
    mutation changes nothing when |T| >= k_tier); count_formula, whose right side is HSER-9.1 written
    independently (|S| = min(k_tier, |T|)), must."""
    assert active_set_cardinality.prove().ok
    monkeypatch.setattr(active_set_cardinality.Slots, "tier_filled", lambda self, i: i <= self.n)
    cert = active_set_cardinality.prove()
    c = next(x for x in cert.claims if x.name == "count_formula")
    show(c)
    assert c.result == COUNTEREXAMPLE and not cert.ok
    assert c.model["n_tiers_in_T"] < 2                      # fewer tiers than k_tier = 2, so a slot too many
    assert [1, 2, 2] not in c.details["fan-outs not as expected"]       # k_tier = 1: nothing to overfill
    assert [2, 2, 2] in c.details["fan-outs not as expected"]


def test_slot_model_with_an_extra_tier_slot_fails_at_most_k(monkeypatch):
    """Counting k_tier + 1 tier slots: at_most_K catches it."""
    S = active_set_cardinality.Slots
    real_init = S.__init__

    def init(self, k):
        real_init(self, k)
        self.tier.append(__import__("z3").Int(f"t_{k[0]}"))
        self.premises += [self.G(self.tier[-1]) >= 1, self.E(self.tier[-1]) >= 1]

    monkeypatch.setattr(S, "__init__", init)
    monkeypatch.setattr(S, "count", lambda self: __import__("z3").Sum(
        [__import__("z3").If(self.tier_filled(i), self.tier_slot_count(i), 0) for i in range(len(self.tier))]))
    cert = active_set_cardinality.prove()
    bad = {x.name for x in cert.claims if not x.ok}
    print(bad)
    assert {"count_formula", "at_most_K"} <= bad


def test_router_rows_model_with_one_tier_slot_too_many_fails(monkeypatch):
    """The same mutation in bounded_active_compute's layer model: router_rows_formula (PARAM-3.2 written
    independently) fails, while router_rows_bound (a constant right side) does not notice."""
    monkeypatch.setattr(bounded_active_compute.Layer, "tier_filled", lambda self, i: i <= self.n)
    c = bounded_active_compute.prove()
    results = {x.name: x.result for x in c.claims}
    print(results)
    assert results["router_rows_formula"] == COUNTEREXAMPLE and not c.ok


# --- quantization: every lemma of the chain is used, and proved -------------------------------------------

def test_quantization_chain_needs_each_proved_lemma():
    assert quantization_bounds.chain_claim().result == PROVED
    for lemma in ("monotone", "odd", "largest_product"):
        c = quantization_bounds.chain_claim(drop=(lemma,))
        print(lemma, c.result, c.model)
        assert c.result == COUNTEREXAMPLE, lemma
    for claim in (quantization_bounds.rounding_monotone_claim(), quantization_bounds.rounding_odd_claim(),
                  quantization_bounds.products_exact_claim()):
        assert claim.result == PROVED, claim.name


def test_rounding_odd_uses_smt_equality():
    """With fp.eq instead of SMT =, -0.0 and +0.0 would count as equal; the claim's form uses `=`."""
    form = quantization_bounds.rounding_odd_claim().solver_form
    assert "fp.eq" not in form and "(= " in form


def test_largest_product_check_fails_for_a_wrong_bound(monkeypatch):
    """Lower the stated bound below the true maximum: the exhaustive check finds significands above it."""
    monkeypatch.setattr(quantization_bounds, "Y_MAX", 127.0)
    c = quantization_bounds.largest_product_claim()
    assert c.result == COUNTEREXAMPLE and c.model["largest"] == 127.0 + 2.0 ** -17


# --- lite-llm prove --check ------------------------------------------------------------------------------

def test_check_passes_on_fresh_certificates_and_names_a_drifted_one(tmp_path, capsys):
    from lite_llm.cli import main

    assert main(["prove", "--only", "corollary", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "timings.json").is_file()
    assert "time_s" not in (tmp_path / "corollary.json").read_text()
    capsys.readouterr()
    assert main(["prove", "--check", "--only", "corollary", "--out", str(tmp_path)]) == 0
    assert "byte-identical" in capsys.readouterr().out
    d = json.loads((tmp_path / "corollary.json").read_text())
    d["claims"][0]["statement"] += " (edited)"
    (tmp_path / "corollary.json").write_text(json.dumps(d, indent=2) + "\n")
    assert main(["prove", "--check", "--only", "corollary", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "differ from the committed certificates" in out and "corollary.json" in out
    assert "corollary.md" not in out.splitlines()[-1]        # only the edited file is named
    (tmp_path / "corollary.md").unlink()
    assert main(["prove", "--check", "--only", "corollary", "--out", str(tmp_path)]) == 1
    assert "corollary.md" in capsys.readouterr().out.splitlines()[-1]
