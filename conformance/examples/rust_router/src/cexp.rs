//! The canonical exp, the tree sum, softmax (HSER-6) and gate renormalisation (HSER-8.1).
//!
//! Only +, -, *, / and round-to-integral, each one correctly rounded IEEE-754 operation; no
//! library exp, no fused multiply-add (Rust never fuses unless `mul_add` is called), no reordering.

const LOG2E: u32 = 0x3FB8_AA3B;
const LN2_HI: u32 = 0x3F31_8000;
const LN2_LO: u32 = 0xB95E_8083;
/// C7, C6, ..., C0 (HSER-6.3), in Horner order.
const C: [u32; 8] = [
    0x3950_0D01, 0x3AB6_0B61, 0x3C08_8889, 0x3D2A_AAAB, 0x3E2A_AAAB, 0x3F00_0000, 0x3F80_0000, 0x3F80_0000,
];

fn f(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// HSER-6.1 .. HSER-6.3, for binary32 t <= 0 (including -0.0 and -inf).
pub fn canonical_exp(t: f32) -> f32 {
    if t < -87.0 {
        return 0.0; // HSER-6.1: +0.0
    }
    // 1. n = round_half_even(t * LOG2E)
    let n = (t * f(LOG2E)).round_ties_even();
    // 2. r = (t - n * LN2_HI) - n * LN2_LO
    let r = (t - n * f(LN2_HI)) - n * f(LN2_LO);
    // 3. Horner, one multiplication and one addition per step, never fused.
    let mut p = f(C[0]);
    for &c in &C[1..] {
        p = p * r;
        p = p + f(c);
    }
    // 4. result = p * 2**n, with 2**n a normal binary32 (-126 <= n <= 0).
    let e = n as i32;
    p * f32::from_bits(((127 + e) as u32) << 23)
}

/// HSER-6.5: pad to the next power of two with -0.0, then sum adjacent pairs until one is left.
pub fn tree_sum(v: &[f32]) -> f32 {
    // n = 0: padded to one -0.0, the empty sum (HSER-6.5)
    let mut buf: Vec<f32> = v.to_vec();
    buf.resize(v.len().next_power_of_two(), -0.0);
    while buf.len() > 1 {
        buf = buf.chunks_exact(2).map(|p| p[0] + p[1]).collect();
    }
    buf[0]
}

/// HSER-6.6: binary32 probabilities of binary64 logits, n >= 1.
pub fn softmax(z: &[f64]) -> Vec<f32> {
    // 1. m = max z_j (OVW-2.5: a zero maximum may be either zero)
    let m = z.iter().copied().fold(f64::NEG_INFINITY, |a, b| if b > a { b } else { a });
    // 2.-3. d_j = z_j - m in binary64; flushed below -87 before conversion, else canonical_exp.
    let e: Vec<f32> = z
        .iter()
        .map(|&zj| {
            let d = zj - m;
            if d < -87.0 {
                0.0
            } else {
                canonical_exp(d as f32)
            }
        })
        .collect();
    // 4. S = tree_sum(e); 5. p_j = e_j / S.
    let s = tree_sum(&e);
    e.iter().map(|&ej| ej / s).collect()
}

/// HSER-8.1: r_j = p_j / tree_sum(p of the chosen candidates, in rank order).
/// When the chosen p sum to zero, each r_j is binary32(1 / m).
pub fn renormalise(p: &[f32]) -> Vec<f32> {
    let s = tree_sum(p);
    let m = p.len() as f32;
    p.iter().map(|&pj| if s == 0.0 { 1.0 / m } else { pj / s }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_anchors() {
        assert_eq!(canonical_exp(0.0).to_bits(), 1.0f32.to_bits());
        assert_eq!(canonical_exp(-0.0).to_bits(), 1.0f32.to_bits());
        assert_eq!(canonical_exp(f32::NEG_INFINITY).to_bits(), 0);
        assert_eq!(canonical_exp(-87.5).to_bits(), 0);
        assert!(canonical_exp(-87.0) > 0.0);
        // within 1.5 ulp of exp (HSER-6.4) on a few points
        for &t in &[-1.0f32, -0.5, -10.0, -59.954247, -86.9] {
            let want = (t as f64).exp();
            let got = canonical_exp(t) as f64;
            assert!((got - want).abs() / want < 3.0 * f32::EPSILON as f64, "{t}");
        }
    }

    #[test]
    fn tree_sum_order_and_signed_zero() {
        assert_eq!(tree_sum(&[-0.0, -0.0, -0.0]).to_bits(), (-0.0f32).to_bits());
        // (2**24 + 1) + (1 + 1): pairs, not left to right
        assert_eq!(tree_sum(&[16777216.0, 1.0, 1.0, 1.0]), 16777218.0);
        assert_eq!(softmax(&[3.0]), vec![1.0]);
    }
}
