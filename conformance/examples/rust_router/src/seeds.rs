//! Seeds and tie keys (HSER-4). Words are u64, arithmetic modulo 2**64 (OVW notation).

use crate::json::Value;

/// HSER-4.3: the SplitMix64 finalizer.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// HSER-4.2: word(l, t, g) = (l << 62) | (t << 32) | g, for l in {1, 2, 3}, t < 2**16, g < 2**32.
pub fn word(level: u64, tier: u64, group: u64) -> u64 {
    (level << 62) | (tier << 32) | group
}

/// HSER-4.4: s_l = mix64(s ^ word(l, t, g)).
pub fn level_seed(seed: u64, level: u64, tier: u64, group: u64) -> u64 {
    mix64(seed ^ word(level, tier, group))
}

/// HSER-4.5: key(j) = mix64(s_l ^ j).
pub fn tie_key(lseed: u64, j: u64) -> u64 {
    mix64(lseed ^ j)
}

/// HSER-4.1: a seed is an integer in [0, 2**64): a JSON integer, or a string "0x" followed by
/// 1 to 16 hexadecimal digits. Anything else (negative, >= 2**64, fractions, booleans, other
/// strings) is `None`, which the caller rejects with E_SEED (or E_CONFIG inside a configuration).
pub fn parse_seed(v: &Value) -> Option<u64> {
    match v {
        Value::Num(_) => v.as_int_literal().and_then(|i| u64::try_from(i).ok()),
        Value::Str(s) => {
            let h = s.strip_prefix("0x")?;
            if h.is_empty() || h.len() > 16 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(h, 16).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn splitmix_reference_values() {
        // SplitMix64's first output for state 0 is mix64(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF.
        assert_eq!(mix64(0x9E37_79B9_7F4A_7C15), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix64(0), 0);
        assert_ne!(level_seed(0, 3, 1, 2), level_seed(0, 3, 2, 1));
    }

    #[test]
    fn seeds() {
        let p = |s: &str| parse_seed(&parse(s).unwrap());
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("\"0xffffffffffffffff\""), Some(u64::MAX));
        assert_eq!(p("\"0x10000000000000000\""), None);
        assert_eq!(p("18446744073709551616"), None);
        assert_eq!(p("-1"), None);
        assert_eq!(p("1.5"), None);
        assert_eq!(p("true"), None);
        assert_eq!(p("\"0xZZ\""), None);
        assert_eq!(p("\"0x\""), None);
    }
}
