//! Ranking and top-k (HSER-5), the three levels (HSER-7), gates (HSER-8) and the routing record
//! (HSER-9), with the input checks of HSER-1 in the order of HSER-10.3.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::cexp::{renormalise, softmax};
use crate::config::{parse_config, resolve_tierset, Config};
use crate::json::Value;
use crate::npy::Tensor;
use crate::quantize::{quantize_row, quantize_rows, row_logit, QRow};
use crate::seeds::{level_seed, parse_seed, tie_key};
use crate::Reject;

/// A planted bug for the test suite's own test (tests/conformance/test_rust_example.py): with
/// RUST_ROUTER_BUG=signed-tie-key, tie keys are compared as signed integers, which HSER-5.1
/// forbids. Off unless the variable is set.
fn signed_keys_bug() -> bool {
    static BUG: OnceLock<bool> = OnceLock::new();
    *BUG.get_or_init(|| std::env::var("RUST_ROUTER_BUG").map(|v| v == "signed-tie-key").unwrap_or(false))
}

/// HSER-5.1 / 5.2: the first min(k, n) candidates, best first: larger logit first, equal logits
/// (-0.0 == +0.0) by the smaller key as an unsigned word.
pub fn top_k(z: &[f64], keys: &[u64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..z.len()).collect();
    let signed = signed_keys_bug();
    idx.sort_unstable_by(|&i, &j| {
        // logits are never NaN (HSER-1.3, HSER-3.3); -0.0 and +0.0 compare equal
        z[j].partial_cmp(&z[i]).unwrap_or(std::cmp::Ordering::Equal).then_with(|| {
            if signed {
                (keys[i] as i64).cmp(&(keys[j] as i64))
            } else {
                keys[i].cmp(&keys[j])
            }
        })
    });
    idx.truncate(k.min(z.len()));
    idx
}

/// The routing record of HSER-9.3 for T tokens, row-major.
pub struct Record {
    pub t: usize,
    pub k: usize,
    pub k_tier: usize,
    pub k_group: usize,
    pub g_max: usize,
    pub e_max: usize,
    pub tier: Vec<i32>,
    pub group: Vec<i32>,
    pub expert: Vec<i32>,
    pub gate: Vec<f32>,
    pub count: Vec<i32>,
    pub tier_set: Vec<i32>,
    pub tier_probs: Vec<f32>,
    pub chosen_tiers: Vec<i32>,
    pub group_probs: Vec<f32>,
    pub chosen_groups: Vec<i32>,
    pub expert_probs: Vec<f32>,
}

impl Record {
    pub fn tensors(&self) -> Vec<(&'static str, Tensor)> {
        let (t, k, kt, kg) = (self.t, self.k, self.k_tier, self.k_group);
        vec![
            ("tier", Tensor::from_i32(vec![t, k], &self.tier)),
            ("group", Tensor::from_i32(vec![t, k], &self.group)),
            ("expert", Tensor::from_i32(vec![t, k], &self.expert)),
            ("gate", Tensor::from_f32(vec![t, k], &self.gate)),
            ("count", Tensor::from_i32(vec![t], &self.count)),
            ("tier_set", Tensor::from_i32(vec![self.tier_set.len()], &self.tier_set)),
            ("tier_probs", Tensor::from_f32(vec![t, self.tier_set.len()], &self.tier_probs)),
            ("chosen_tiers", Tensor::from_i32(vec![t, kt], &self.chosen_tiers)),
            ("group_probs", Tensor::from_f32(vec![t, kt, self.g_max], &self.group_probs)),
            ("chosen_groups", Tensor::from_i32(vec![t, kt, kg], &self.chosen_groups)),
            ("expert_probs", Tensor::from_f32(vec![t, kt, kg, self.e_max], &self.expert_probs)),
        ]
    }
}

/// The quantized router of every tier of the configuration (HSER-2.6).
struct Weights {
    tier: Vec<QRow>,
    group: Vec<Vec<QRow>>,
    /// expert[t][g * E_t + e]
    expert: Vec<Vec<QRow>>,
}

/// HSER-1.4: check and quantize every tier's router (binary32, the shapes HSER-7 reads, finite).
fn quantize_weights(cfg: &Config, inputs: &HashMap<String, Tensor>) -> Result<Weights, Reject> {
    let d = cfg.d_model;
    let mut w = Weights { tier: vec![], group: vec![], expert: vec![] };
    for (t, tier) in cfg.tiers.iter().enumerate() {
        let take = |kind: &str, shape: Vec<usize>| -> Result<Vec<f32>, Reject> {
            let name = format!("router_{kind}.{t}");
            let wrong = |why: String| Reject::new("E_WEIGHTS", format!("{name} (tier {t}, {} router): {why}", kind));
            let x = inputs.get(&name).ok_or_else(|| wrong("missing".into()))?;
            if x.dtype != "float32" {
                return Err(wrong(format!("dtype {} is not float32", x.dtype)));
            }
            if x.shape != shape {
                return Err(wrong(format!("shape {:?}, expected {:?}", x.shape, shape)));
            }
            let v = x.f32s();
            if let Some(i) = v.iter().position(|f| !f.is_finite()) {
                return Err(wrong(format!("element {i} is {}", v[i])));
            }
            Ok(v)
        };
        let (g, e) = (tier.groups, tier.experts);
        let l1 = take("tier", vec![d])?;
        let l2 = take("group", vec![g, d])?;
        let l3 = take("expert", vec![g, e, d])?;
        w.tier.push(quantize_row(&l1, cfg.weight_limbs));
        w.group.push(quantize_rows(&l2, g, d, cfg.weight_limbs));
        w.expert.push(quantize_rows(&l3, g * e, d, cfg.weight_limbs));
    }
    Ok(w)
}

/// binary16 -> binary32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: m * 2**-24, exact in binary32
            let v = m as f32 * f32::from_bits((127 - 24) << 23);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// HSER-1.1 .. HSER-1.3, in the order shape, type, finiteness.
fn hidden_states(cfg: &Config, h: &Tensor) -> Result<(usize, Vec<f32>), Reject> {
    if h.shape.len() != 2 || h.shape[1] != cfg.d_model {
        return Err(Reject::new("E_SHAPE", format!("hidden states of shape {:?}, expected (T, {})", h.shape, cfg.d_model)));
    }
    let x: Vec<f32> = match h.dtype.as_str() {
        "float32" => h.f32s(),
        "float64" => h.f64s().into_iter().map(|v| v as f32).collect(), // round to nearest even
        "float16" => h.u16s().into_iter().map(f16_to_f32).collect(),
        "bfloat16" => h.u16s().into_iter().map(|b| f32::from_bits((b as u32) << 16)).collect(),
        other => return Err(Reject::new("E_DTYPE", format!("hidden states of type {other}: a binary floating-point type is required"))),
    };
    let d = cfg.d_model;
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Reject::new("E_NONFINITE", format!("hidden state ({}, {}) is {} after conversion to binary32", i / d, i % d, x[i])));
    }
    Ok((h.shape[0], x))
}

/// One level: softmax of the candidates' logits, top-k by (logit, key), renormalised gates of the
/// chosen (HSER-6.6, HSER-5, HSER-8.1). Returns (probabilities, chosen positions, renormalised).
fn level(z: &[f64], keys: &[u64], k: usize) -> (Vec<f32>, Vec<usize>, Vec<f32>) {
    let p = softmax(z);
    let chosen = top_k(z, keys, k);
    let r = renormalise(&chosen.iter().map(|&i| p[i]).collect::<Vec<_>>());
    (p, chosen, r)
}

/// The `route` operation: R(h, W, T, s) with every check of HSER-1 and HSER-10.
pub fn route(config: Option<&Value>, params: &Value, inputs: &HashMap<String, Tensor>) -> Result<Record, Reject> {
    let cfg = parse_config(config)?;
    let w = quantize_weights(&cfg, inputs)?;
    // HSER-10.3: seed, TierSet, hidden-state shape, type, finiteness.
    let seed = match params.get("seed") {
        None | Some(Value::Null) => cfg.seed,
        Some(v) => parse_seed(v).ok_or_else(|| {
            Reject::new("E_SEED", format!("seed {} is not an integer in [0, 2**64)", crate::json::to_string(v)))
        })?,
    };
    let ts = resolve_tierset(&cfg, params.get("tierset"))?;
    let h = inputs.get("hidden").ok_or_else(|| Reject::new("E_SHAPE", "no hidden states given".into()))?;
    let (n_tok, x) = hidden_states(&cfg, h)?;
    let d = cfg.d_model;

    let (kt, kg, ke) = (cfg.k_tier, cfg.k_group, cfg.k_expert);
    let k = kt * kg * ke;
    let g_max = ts.iter().map(|&t| cfg.tiers[t].groups).max().unwrap();
    let e_max = ts.iter().map(|&t| cfg.tiers[t].experts).max().unwrap();
    let n_ts = ts.len();
    let mut rec = Record {
        t: n_tok,
        k,
        k_tier: kt,
        k_group: kg,
        g_max,
        e_max,
        tier: vec![-1; n_tok * k],
        group: vec![-1; n_tok * k],
        expert: vec![-1; n_tok * k],
        gate: vec![0.0; n_tok * k],
        count: vec![0; n_tok],
        tier_set: ts.iter().map(|&t| t as i32).collect(),
        tier_probs: vec![0.0; n_tok * n_ts],
        chosen_tiers: vec![-1; n_tok * kt],
        group_probs: vec![0.0; n_tok * kt * g_max],
        chosen_groups: vec![-1; n_tok * kt * kg],
        expert_probs: vec![0.0; n_tok * kt * kg * e_max],
    };

    // Seeds and keys depend only on s, the level, the tier and the group (HSER-4.4, 4.5).
    let s1 = level_seed(seed, 1, 0, 0);
    let keys1: Vec<u64> = ts.iter().map(|&t| tie_key(s1, t as u64)).collect();

    for tok in 0..n_tok {
        let qx = quantize_row(&x[tok * d..(tok + 1) * d], cfg.hidden_limbs);
        // Level 1 (HSER-7.1): the TierSet's tiers in ascending id order.
        let z1: Vec<f64> = ts.iter().map(|&t| row_logit(&qx, &w.tier[t])).collect();
        let (p1, c1, r1) = level(&z1, &keys1, kt);
        rec.tier_probs[tok * n_ts..(tok + 1) * n_ts].copy_from_slice(&p1);
        let mut slot = 0;
        for (ti, &ci) in c1.iter().enumerate() {
            let t = ts[ci];
            rec.chosen_tiers[tok * kt + ti] = t as i32;
            // Level 2 (HSER-7.2): groups 0 .. G_t - 1 with seed s_{2,t}.
            let tier = &cfg.tiers[t];
            let s2 = level_seed(seed, 2, t as u64, 0);
            let z2: Vec<f64> = w.group[t].iter().map(|row| row_logit(&qx, row)).collect();
            let keys2: Vec<u64> = (0..tier.groups).map(|g| tie_key(s2, g as u64)).collect();
            let (p2, c2, r2) = level(&z2, &keys2, kg);
            let gp = (tok * kt + ti) * g_max;
            rec.group_probs[gp..gp + tier.groups].copy_from_slice(&p2);
            for (gi, &g) in c2.iter().enumerate() {
                rec.chosen_groups[(tok * kt + ti) * kg + gi] = g as i32;
                // Level 3 (HSER-7.3): experts 0 .. E_t - 1 of group g with seed s_{3,t,g}.
                let s3 = level_seed(seed, 3, t as u64, g as u64);
                let rows = &w.expert[t][g * tier.experts..(g + 1) * tier.experts];
                let z3: Vec<f64> = rows.iter().map(|row| row_logit(&qx, row)).collect();
                let keys3: Vec<u64> = (0..tier.experts).map(|e| tie_key(s3, e as u64)).collect();
                let (p3, c3, r3) = level(&z3, &keys3, ke);
                let ep = ((tok * kt + ti) * kg + gi) * e_max;
                rec.expert_probs[ep..ep + tier.experts].copy_from_slice(&p3);
                // HSER-9.2: nested rank order; HSER-8.2: gate = (r_t * r_g) * r_e.
                for (ei, &e) in c3.iter().enumerate() {
                    let o = tok * k + slot;
                    rec.tier[o] = t as i32;
                    rec.group[o] = g as i32;
                    rec.expert[o] = e as i32;
                    rec.gate[o] = (r1[ti] * r2[gi]) * r3[ei];
                    slot += 1;
                }
            }
        }
        rec.count[tok] = slot as i32;
    }
    Ok(rec)
}
