//! The routing-level operations of CONF-3.2, each a few lines around the pieces.

use std::collections::HashMap;

use crate::cexp::{canonical_exp, renormalise, softmax, tree_sum};
use crate::config::{parse_config, resolve_tierset};
use crate::json::Value;
use crate::npy::Tensor;
use crate::quantize::{exact_dot, logit, quantize_rows};
use crate::router::{route, top_k};
use crate::seeds::{level_seed, mix64, tie_key};
use crate::{Failure, Reject};

pub type Outputs = Vec<(String, Tensor)>;

/// The operations this harness offers (OVW-1.3); every other one is answered `skipped`.
pub const OPERATIONS: [&str; 12] = [
    "route", "tier_set", "quantize", "logits", "mix64", "level_seed", "tie_keys", "canonical_exp",
    "tree_sum", "softmax", "top_k", "renormalise",
];

pub struct Request<'a> {
    pub config: Option<&'a Value>,
    pub params: &'a Value,
    pub inputs: HashMap<String, Tensor>,
}

impl Request<'_> {
    fn input(&self, name: &str) -> Result<&Tensor, Failure> {
        self.inputs.get(name).ok_or_else(|| Failure::Errored(format!("input {name} missing")))
    }
    fn param_usize(&self, name: &str) -> Result<usize, Failure> {
        self.params
            .get(name)
            .and_then(Value::as_int_literal)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| Failure::Errored(format!("parameter {name} missing or not a count")))
    }
    /// A limb count in 1..=max: hidden states take 1, 2 or 3 limbs, router rows 1 or 2 (TIER-1.5).
    fn limbs(&self, name: &str, max: usize) -> Result<u32, Failure> {
        match self.param_usize(name)? {
            l if (1..=max).contains(&l) => Ok(l as u32),
            l => Err(Failure::Errored(format!("{name} = {l}: limbs are 1 to {max}"))),
        }
    }
}

/// (rows, width) of a 2-D input.
fn dims2(t: &Tensor) -> (usize, usize) {
    match t.shape.as_slice() {
        [b, n] => (*b, *n),
        [n] => (1, *n),
        _ => (1, t.numel()),
    }
}

fn out(name: &str, t: Tensor) -> (String, Tensor) {
    (name.to_string(), t)
}

pub fn run(op: &str, req: &Request) -> Result<Outputs, Failure> {
    match op {
        "route" => {
            let rec = route(req.config, req.params, &req.inputs)?;
            Ok(rec.tensors().into_iter().map(|(n, t)| out(n, t)).collect())
        }
        "tier_set" => {
            let cfg = parse_config(req.config)?;
            let ts = resolve_tierset(&cfg, req.params.get("tierset"))?;
            let v: Vec<i32> = ts.iter().map(|&t| t as i32).collect();
            Ok(vec![out("tiers", Tensor::from_i32(vec![v.len()], &v))])
        }
        "quantize" => {
            let x = req.input("x")?;
            let (n, d) = dims2(x);
            let rows = quantize_rows(&x.f32s(), n, d, req.limbs("limbs", 3)?);
            let q: Vec<i64> = rows.iter().flat_map(|r| r.q.iter().copied()).collect();
            let a: Vec<f32> = rows.iter().map(|r| r.absmax).collect();
            let s: Vec<f64> = rows.iter().map(|r| r.scale).collect();
            Ok(vec![
                out("q", Tensor::from_i64(vec![n, d], &q)),
                out("absmax", Tensor::from_f32(vec![n], &a)),
                out("scale", Tensor::from_f64(vec![n], &s)),
            ])
        }
        "logits" => {
            let (x, w) = (req.input("x")?, req.input("w")?);
            let ((t, d), (n, _)) = (dims2(x), dims2(w));
            let qx = quantize_rows(&x.f32s(), t, d, req.limbs("hidden_limbs", 3)?);
            let qw = quantize_rows(&w.f32s(), n, d, req.limbs("weight_limbs", 2)?);
            let mut acc = Vec::with_capacity(t * n);
            let mut z = Vec::with_capacity(t * n);
            for a in &qx {
                for b in &qw {
                    let s = exact_dot(&a.q, &b.q);
                    acc.push(s);
                    z.push(logit(s, a.scale, b.scale));
                }
            }
            Ok(vec![out("acc", Tensor::from_i64(vec![t, n], &acc)), out("z", Tensor::from_f64(vec![t, n], &z))])
        }
        "mix64" => {
            let x = req.input("x")?;
            let y: Vec<u64> = x.u64s().into_iter().map(mix64).collect();
            Ok(vec![out("y", Tensor::from_u64(x.shape.clone(), &y))])
        }
        "level_seed" => {
            let s = req.input("seed")?.u64s();
            let (l, t, g) = (req.input("level")?.u64s(), req.input("tier")?.u64s(), req.input("group")?.u64s());
            // HSER-4.2: a level outside 1..3, a tier >= 2**16 or a group >= 2**32 has no word
            if let Some(i) = (0..s.len()).find(|&i| !(1..=3).contains(&l[i]) || t[i] >= 1 << 16 || g[i] >= 1 << 32) {
                let msg = format!("no level word for level {}, tier {}, group {}", l[i], t[i], g[i]);
                return Err(Reject::new("E_SEED", msg).into());
            }
            let y: Vec<u64> = (0..s.len()).map(|i| level_seed(s[i], l[i], t[i], g[i])).collect();
            Ok(vec![out("level_seed", Tensor::from_u64(vec![y.len()], &y))])
        }
        "tie_keys" => {
            let n = req.param_usize("n")?;
            let s = req.input("level_seed")?.u64s();
            let keys: Vec<u64> = s.iter().flat_map(|&sl| (0..n as u64).map(move |j| tie_key(sl, j))).collect();
            Ok(vec![out("keys", Tensor::from_u64(vec![s.len(), n], &keys))])
        }
        "canonical_exp" => {
            let t = req.input("t")?;
            // HSER-6.1: the domain is t <= 0; a NaN or t > 0 is E_NONFINITE
            if let Some((i, v)) = t.f32s().into_iter().enumerate().find(|(_, v)| v.is_nan() || *v > 0.0) {
                return Err(Reject::new("E_NONFINITE", format!("canonical_exp of element {i} = {v}: outside t <= 0")).into());
            }
            let y: Vec<f32> = t.f32s().into_iter().map(canonical_exp).collect();
            Ok(vec![out("y", Tensor::from_f32(t.shape.clone(), &y))])
        }
        "tree_sum" => {
            let v = req.input("v")?;
            let (b, n) = dims2(v);
            let s: Vec<f32> = if n == 0 { vec![-0.0; b] } else { v.f32s().chunks_exact(n).map(tree_sum).collect() };
            Ok(vec![out("sum", Tensor::from_f32(vec![b], &s))])
        }
        "softmax" | "renormalise" => {
            let (name, res) = if op == "softmax" { ("z", "p") } else { ("p", "r") };
            let v = req.input(name)?;
            let (b, n) = dims2(v);
            let rows: Vec<f32> = if op == "softmax" {
                v.f64s().chunks_exact(n.max(1)).flat_map(softmax).collect()
            } else {
                v.f32s().chunks_exact(n.max(1)).flat_map(renormalise).collect()
            };
            Ok(vec![out(res, Tensor::from_f32(vec![b, n], &rows))])
        }
        "top_k" => {
            let k = req.param_usize("k")?;
            let z = req.input("z")?;
            let keys = req.input("keys")?.u64s();
            let (b, n) = dims2(z);
            let m = k.min(n);
            let idx: Vec<i32> = z
                .f64s()
                .chunks_exact(n.max(1))
                .flat_map(|row| top_k(row, &keys, k).into_iter().map(|i| i as i32))
                .collect();
            Ok(vec![out("index", Tensor::from_i32(vec![b, m], &idx))])
        }
        _ => Err(Failure::Skipped(format!("operation {op} is not offered"))),
    }
}
