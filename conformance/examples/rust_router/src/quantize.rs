//! Quantization (HSER-2) and exact logits (HSER-3).
//!
//! Every f32/f64 operation here is one IEEE-754 operation, round to nearest even (Rust never
//! contracts a * b + c into a fused multiply-add, OVW-2.2).

/// One quantized row: the integers Q, the absolute maximum a (before step 1 of HSER-2.3) and the
/// binary64 dequantization scale (HSER-2.5).
#[derive(Clone, Debug)]
pub struct QRow {
    pub q: Vec<i64>,
    pub absmax: f32,
    pub scale: f64,
}

/// 127 * 128**(L-1): the largest |Q| for L limbs (exact in binary64): 127, 16256, 2080768.
pub fn qmax(limbs: u32) -> f64 {
    127.0 * 128f64.powi(limbs as i32 - 1)
}

/// HSER-2.1 .. HSER-2.5 for one row of binary32 values.
pub fn quantize_row(x: &[f32], limbs: u32) -> QRow {
    // HSER-2.1: a = max |x_i|, exact (one of the magnitudes).
    let a = x.iter().fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    // HSER-2.5: scale = binary64(a) / (127 * 128**(L-1)), one correctly rounded division.
    let scale = a as f64 / qmax(limbs);
    if a == 0.0 {
        // HSER-2.2
        return QRow { q: vec![0; x.len()], absmax: a, scale };
    }
    // HSER-2.3 step 1: lift rows below 2**-64 by 2**64 (exact).
    let two64 = f32::from_bits((127 + 64) << 23);
    let tiny = f32::from_bits((127 - 64) << 23);
    let (lift, a1) = if a < tiny { (two64, a * two64) } else { (1.0f32, a) };
    // step 2: one division per row.
    let r = 127.0f32 / a1;
    // step 3: y_i = x_i * r, Q_i = round_half_even(y_i * 2**(7 (L-1))) (the power of two is exact).
    let p = f32::from_bits((127 + 7 * (limbs - 1)) << 23);
    let q = x
        .iter()
        .map(|&xi| {
            let xs = if lift != 1.0 { xi * lift } else { xi };
            let y = xs * r;
            (y * p).round_ties_even() as i64
        })
        .collect();
    QRow { q, absmax: a, scale }
}

/// Quantize the `n` rows of a row-major (n, d) matrix, each with its own scale (HSER-2.6).
pub fn quantize_rows(x: &[f32], n: usize, d: usize, limbs: u32) -> Vec<QRow> {
    // n rows of d elements; with d = 0 every row is empty (a = 0, HSER-2.1) and x holds nothing
    (0..n).map(|i| quantize_row(&x[i * d..(i + 1) * d], limbs)).collect()
}

/// HSER-3.1: the exact integer accumulator (|acc| < 2**53, HSER-3.2, so i64 never overflows).
pub fn exact_dot(a: &[i64], b: &[i64]) -> i64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// HSER-3.3: z = (binary64(acc) * scale_x) * scale_w, in this order.
pub fn logit(acc: i64, scale_x: f64, scale_w: f64) -> f64 {
    (acc as f64 * scale_x) * scale_w
}

/// The logit of a quantized token against a quantized router row.
pub fn row_logit(x: &QRow, w: &QRow) -> f64 {
    logit(exact_dot(&x.q, &w.q), x.scale, w.scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_basics() {
        let r = quantize_row(&[1.0, -0.5, 0.25, 0.0], 1);
        assert_eq!(r.q, vec![127, -64, 32, 0]); // -63.5 -> -64 and 31.75 -> 32 (nearest)
        let r = quantize_row(&[1.0, -0.5], 2);
        assert_eq!(r.q, vec![16256, -8128]);
        let z = quantize_row(&[0.0, -0.0], 2);
        assert_eq!((z.q, z.absmax, z.scale), (vec![0, 0], 0.0, 0.0));
        let s = quantize_row(&[f32::from_bits(1), -f32::from_bits(1)], 1);
        assert_eq!(s.q, vec![127, -127]);
        let m = quantize_row(&[f32::MAX, -f32::MAX], 2);
        assert_eq!(m.q, vec![16256, -16256]);
    }
}
