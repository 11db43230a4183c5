//! The configuration (TIER-1, spec/schemas/config.schema.json) and TierSets (TIER-2, TIER-3).

use crate::json::Value;
use crate::seeds::parse_seed;
use crate::Reject;

#[derive(Clone, Debug)]
pub struct Tier {
    pub name: String,
    pub groups: usize,
    pub experts: usize,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub d_model: usize,
    pub tiers: Vec<Tier>,
    pub k_tier: usize,
    pub k_group: usize,
    pub k_expert: usize,
    pub hidden_limbs: u32,
    pub weight_limbs: u32,
    pub seed: u64,
}

fn bad(field: &str, why: &str) -> Reject {
    Reject::new("E_CONFIG", format!("configuration field {field}: {why}"))
}

/// Reject members other than `allowed` (the schema's additionalProperties: false).
fn only(m: &[(String, Value)], allowed: &[&str], at: &str) -> Result<(), Reject> {
    match m.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(bad(&format!("{at}{k}"), "unknown field")),
        None => Ok(()),
    }
}

/// An integer field in [lo, hi] (JSON Schema `integer`: booleans are not numbers); `default` when absent.
fn int(m: &[(String, Value)], key: &str, lo: i128, hi: i128, default: Option<i128>, at: &str) -> Result<i128, Reject> {
    let field = format!("{at}{key}");
    match m.iter().find(|(k, _)| k == key) {
        None => default.ok_or_else(|| bad(&field, "required")),
        // TIER-1.1: a JSON integer literal, not 16.0 or 1e1 (which JSON Schema would count as integers)
        Some((_, v)) => match v.as_int_literal() {
            Some(i) if i >= lo && i <= hi => Ok(i),
            Some(i) => Err(bad(&field, &format!("{i} is outside [{lo}, {hi}]"))),
            None => Err(bad(&field, "must be an integer")),
        },
    }
}

/// A number field with an exclusive minimum.
fn number_above(m: &[(String, Value)], key: &str, min: f64) -> Result<(), Reject> {
    match m.iter().find(|(k, _)| k == key) {
        None => Ok(()),
        Some((_, v)) => match v.as_f64() {
            Some(x) if x > min => Ok(()),
            _ => Err(bad(key, &format!("must be a number above {min}"))),
        },
    }
}

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// TIER-1.1 .. TIER-1.5: validate a configuration and read what routing needs.
pub fn parse_config(v: Option<&Value>) -> Result<Config, Reject> {
    let m = v.and_then(Value::as_obj).ok_or_else(|| bad("(root)", "must be an object"))?;
    only(
        m,
        &["spec_version", "d_model", "n_layers", "n_heads", "vocab_size", "max_seq_len", "rope_theta", "norm_eps", "tiers", "router"],
        "",
    )?;
    match m.iter().find(|(k, _)| k == "spec_version") {
        Some((_, Value::Str(s))) if s == "0.1" => {}
        _ => return Err(bad("spec_version", "must be \"0.1\"")),
    }
    let d_model = int(m, "d_model", 1, 1 << 17, None, "")?;
    int(m, "n_layers", 1, 4096, Some(2), "")?;
    let n_heads = int(m, "n_heads", 1, i128::MAX, Some(4), "")?;
    int(m, "vocab_size", 1, 16_777_216, Some(256), "")?;
    int(m, "max_seq_len", 1, 1_048_576, Some(128), "")?;
    number_above(m, "rope_theta", 1.0)?;
    number_above(m, "norm_eps", 0.0)?;

    let tiers_v = m.iter().find(|(k, _)| k == "tiers").map(|(_, v)| v).ok_or_else(|| bad("tiers", "required"))?;
    let tiers_a = tiers_v.as_arr().ok_or_else(|| bad("tiers", "must be a list"))?;
    if tiers_a.is_empty() || tiers_a.len() > 65536 {
        return Err(bad("tiers", "must hold 1 to 65536 tiers"));
    }
    let mut tiers = Vec::with_capacity(tiers_a.len());
    for (i, t) in tiers_a.iter().enumerate() {
        let at = format!("tiers[{i}].");
        let tm = t.as_obj().ok_or_else(|| bad(&format!("tiers[{i}]"), "must be an object"))?;
        only(tm, &["name", "groups", "experts_per_group", "d_ff", "placement"], &at)?;
        let name = match tm.iter().find(|(k, _)| k == "name") {
            Some((_, Value::Str(s))) if valid_name(s) => s.clone(),
            Some(_) => return Err(bad(&format!("{at}name"), "must match ^[a-z][a-z0-9_]{0,63}$")),
            None => return Err(bad(&format!("{at}name"), "required")),
        };
        let limit = (1i128 << 31) - 1;
        let groups = int(tm, "groups", 1, limit, None, &at)? as usize;
        let experts = int(tm, "experts_per_group", 1, limit, None, &at)? as usize;
        int(tm, "d_ff", 1, limit, None, &at)?;
        if let Some((_, p)) = tm.iter().find(|(k, _)| k == "placement") {
            if !matches!(p.as_str(), Some("HBM" | "DRAM" | "NVMe" | "Object")) {
                return Err(bad(&format!("{at}placement"), "must be HBM, DRAM, NVMe or Object"));
            }
        }
        if tiers.iter().any(|x: &Tier| x.name == name) {
            return Err(bad(&format!("{at}name"), &format!("tier name {name:?} is not unique")));
        }
        tiers.push(Tier { name, groups, experts });
    }

    let rv = m.iter().find(|(k, _)| k == "router").map(|(_, v)| v).ok_or_else(|| bad("router", "required"))?;
    let r = rv.as_obj().ok_or_else(|| bad("router", "must be an object"))?;
    only(r, &["k_tier", "k_group", "k_expert", "hidden_limbs", "weight_limbs", "seed"], "router.")?;
    let k_tier = int(r, "k_tier", 1, 65536, None, "router.")?;
    let k_group = int(r, "k_group", 1, 65536, None, "router.")?;
    let k_expert = int(r, "k_expert", 1, 65536, None, "router.")?;
    // TIER-1.5: hidden states take 1, 2 or 3 limbs, router rows 1 or 2 (3 + 3 could reach |acc| = 2**58.98, HSER-3.2)
    let hidden_limbs = int(r, "hidden_limbs", 1, 3, Some(2), "router.")? as u32;
    let weight_limbs = int(r, "weight_limbs", 1, 2, Some(2), "router.")? as u32;
    let seed = match r.iter().find(|(k, _)| k == "seed") {
        None => 0,
        Some((_, v)) => match (v, parse_seed(v)) {
            // the schema: an integer below 2**53, or "0x" and 1 to 16 hex digits
            (Value::Num(_), Some(s)) if s < (1u64 << 53) => s,
            (Value::Str(_), Some(s)) => s,
            _ => return Err(bad("router.seed", "must be an integer in [0, 2**53) or \"0x\" and 1 to 16 hex digits")),
        },
    };

    // TIER-1.1 / 1.5: limits the schema cannot state.
    if d_model % n_heads != 0 || (d_model / n_heads) % 2 != 0 {
        return Err(bad("n_heads", &format!("d_model {d_model} does not split into {n_heads} heads of even size")));
    }
    if k_tier * k_group * k_expert > 1 << 16 {
        return Err(bad("router", "K = k_tier * k_group * k_expert exceeds 2**16"));
    }
    Ok(Config {
        d_model: d_model as usize,
        tiers,
        k_tier: k_tier as usize,
        k_group: k_group as usize,
        k_expert: k_expert as usize,
        hidden_limbs,
        weight_limbs,
        seed,
    })
}

/// One named or numbered tier of a TierSet request.
enum Item {
    Tier(usize),
    Unknown(String),
}

fn by_name(cfg: &Config, s: &str) -> Item {
    match cfg.tiers.iter().position(|t| t.name == s) {
        Some(i) => Item::Tier(i),
        None => Item::Unknown(format!("{s:?}")),
    }
}

/// A comma-list element: a tier name, or a decimal tier id.
fn by_name_or_id(cfg: &Config, s: &str) -> Item {
    let s = s.trim_matches(' '); // TIER-3.5: spaces (U+0020) only
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<usize>() {
            Ok(i) if i < cfg.tiers.len() => Item::Tier(i),
            _ => Item::Unknown(s.to_string()),
        };
    }
    by_name(cfg, s)
}

/// TIER-2.1 .. TIER-2.5 and TIER-3: resolve a TierSet request (a list of names and ids, or the
/// harness forms `all`, `exclusive:NAME`, `cumulative:NAME`, `a,b,c`) to ascending tier ids.
/// Faults in the order of HSER-10.3: an unknown tier anywhere, then empty, then a duplicate.
pub fn resolve_tierset(cfg: &Config, spec: Option<&Value>) -> Result<Vec<usize>, Reject> {
    let unknown = |what: &str| Reject::new("E_UNKNOWN_TIER", format!("TierSet names tier {what}, which is not in T_max (0 .. {})", cfg.tiers.len()));
    let items: Vec<Item> = match spec {
        Some(Value::Arr(a)) => a
            .iter()
            .map(|v| match v {
                Value::Str(s) => by_name(cfg, s),
                Value::Num(n) => match v.as_int_literal() {
                    Some(i) if i >= 0 && (i as u128) < cfg.tiers.len() as u128 => Item::Tier(i as usize),
                    _ => Item::Unknown(n.clone()),
                },
                other => Item::Unknown(crate::json::to_string(other)),
            })
            .collect(),
        Some(Value::Str(s)) => {
            let s = s.trim_matches(' ');
            if s == "all" {
                (0..cfg.tiers.len()).map(Item::Tier).collect()
            } else if let Some(name) = s.strip_prefix("exclusive:") {
                match by_name_or_id(cfg, name) {
                    Item::Tier(t) => vec![Item::Tier(t)],
                    u => vec![u],
                }
            } else if let Some(name) = s.strip_prefix("cumulative:") {
                match by_name_or_id(cfg, name) {
                    Item::Tier(t) => (0..=t).map(Item::Tier).collect(),
                    u => vec![u],
                }
            } else if s.is_empty() {
                Vec::new()
            } else {
                s.split(',').map(|x| by_name_or_id(cfg, x)).collect()
            }
        }
        // a bare number, a boolean, an object: not a collection of names and ids (TIER-2.1)
        Some(other) => return Err(unknown(&crate::json::to_string(other))),
        None => return Err(unknown("(none: no TierSet given)")),
    };
    let mut ids = Vec::with_capacity(items.len());
    for it in &items {
        match it {
            Item::Tier(t) => ids.push(*t),
            Item::Unknown(what) => return Err(unknown(what)),
        }
    }
    if ids.is_empty() {
        return Err(Reject::new("E_EMPTY_TIERSET", "the TierSet is empty".into()));
    }
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(Reject::new("E_DUPLICATE_TIER", format!("the TierSet names tier {} more than once", w[0])));
    }
    Ok(ids)
}
