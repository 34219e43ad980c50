//! GGML tensor types and their dequantization to f32.
//!
//! Block layouts follow the GGUF specification and ggml's reference (scalar) dequantizers;
//! every layout is tested against blocks built by hand in `tests/gguf.rs`. Quantized types
//! store blocks of `block_size` weights in `type_size` bytes, along the tensor's first
//! (fastest) dimension.

use half::{bf16, f16};

/// A GGML tensor type as GGUF numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    Bf16,
    Tq1_0,
    Tq2_0,
    Mxfp4,
}

/// The K-quants' super-block: 256 weights.
pub const QK_K: usize = 256;

impl GgmlType {
    /// The type with GGUF id `id`, if ggml defines it.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            16 => Iq2Xxs,
            17 => Iq2Xs,
            18 => Iq3Xxs,
            19 => Iq1S,
            20 => Iq4Nl,
            21 => Iq3S,
            22 => Iq2S,
            23 => Iq4Xs,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => Iq1M,
            30 => Bf16,
            34 => Tq1_0,
            35 => Tq2_0,
            39 => Mxfp4,
            _ => return None,
        })
    }

    /// The type's GGUF id (the inverse of [`GgmlType::from_id`]).
    pub fn id(self) -> u32 {
        (0..64)
            .find(|&id| GgmlType::from_id(id) == Some(self))
            .expect("every type has an id")
    }

    /// ggml's name of the type (`Q4_K`, `BF16`...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            Iq2Xxs => "IQ2_XXS",
            Iq2Xs => "IQ2_XS",
            Iq3Xxs => "IQ3_XXS",
            Iq1S => "IQ1_S",
            Iq4Nl => "IQ4_NL",
            Iq3S => "IQ3_S",
            Iq2S => "IQ2_S",
            Iq4Xs => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            Iq1M => "IQ1_M",
            Bf16 => "BF16",
            Tq1_0 => "TQ1_0",
            Tq2_0 => "TQ2_0",
            Mxfp4 => "MXFP4",
        }
    }

    /// (weights per block, bytes per block), as ggml's type traits give them.
    pub fn block(self) -> (usize, usize) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | Bf16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2K => (QK_K, 84),
            Q3K => (QK_K, 110),
            Q4K => (QK_K, 144),
            Q5K => (QK_K, 176),
            Q6K => (QK_K, 210),
            Q8K => (QK_K, 292),
            Iq2Xxs => (QK_K, 66),
            Iq2Xs => (QK_K, 74),
            Iq3Xxs => (QK_K, 98),
            Iq1S => (QK_K, 50),
            Iq4Nl => (32, 18),
            Iq3S => (QK_K, 110),
            Iq2S => (QK_K, 82),
            Iq4Xs => (QK_K, 136),
            Iq1M => (QK_K, 56),
            Tq1_0 => (QK_K, 54),
            Tq2_0 => (QK_K, 66),
            Mxfp4 => (32, 17),
        }
    }

    /// Whether [`dequantize`] reads this type.
    pub fn dequantizes(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | Bf16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4K | Q5K | Q6K | Q8K
        )
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `bytes` (whole blocks of `ty`) to f32 weights, appended to `out`. `None` when
/// the type has no dequantizer here ([`GgmlType::dequantizes`]) or `bytes` is not a whole
/// number of blocks.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> Option<()> {
    let (per_block, size) = ty.block();
    if !ty.dequantizes() || !bytes.len().is_multiple_of(size) {
        return None;
    }
    out.reserve(bytes.len() / size * per_block);
    use GgmlType::*;
    match ty {
        F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        F16 => out.extend(bytes.chunks_exact(2).map(|c| f16_at(c, 0))),
        Bf16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        _ => {
            for block in bytes.chunks_exact(size) {
                match ty {
                    Q4_0 => q4_0(block, out),
                    Q4_1 => q4_1(block, out),
                    Q5_0 => q5_0(block, out),
                    Q5_1 => q5_1(block, out),
                    Q8_0 => q8_0(block, out),
                    Q4K => q4_k(block, out),
                    Q5K => q5_k(block, out),
                    Q6K => q6_k(block, out),
                    Q8K => q8_k(block, out),
                    _ => unreachable!("checked by dequantizes()"),
                }
            }
        }
    }
    Some(())
}

/// d (f16), 16 bytes: low nibbles are weights 0..16, high nibbles 16..32; w = d (q − 8).
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| d * ((q & 0xF) as f32 - 8.0)));
    out.extend(qs.iter().map(|&q| d * ((q >> 4) as f32 - 8.0)));
}

/// d, m (f16), 16 bytes of nibbles as Q4_0; w = d q + m.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| d * (q & 0xF) as f32 + m));
    out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
}

/// The fifth bits of the 32 weights (u32, bit j for weight j), then nibbles as Q4_0.
fn five_bit(qh: u32, qs: &[u8], j: usize, high: bool) -> u8 {
    if high {
        (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4)
    } else {
        (qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4)
    }
}

/// d (f16), qh (u32), 16 bytes; w = d (q − 16) with q of 5 bits.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for high in [false, true] {
        out.extend((0..16).map(|j| d * (five_bit(qh, qs, j, high) as f32 - 16.0)));
    }
}

/// d, m (f16), qh (u32), 16 bytes; w = d q + m with q of 5 bits.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for high in [false, true] {
        out.extend((0..16).map(|j| d * five_bit(qh, qs, j, high) as f32 + m));
    }
}

/// d (f16), 32 int8; w = d q.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| d * q as i8 as f32));
}

/// The 6-bit scale and min of sub-block `j` (of 8) packed in the K-quants' 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (s, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (s as f32, m as f32)
}

/// d, dmin (f16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of
/// nibbles (each 32 bytes: low nibbles one sub-block, high nibbles the next);
/// w = d·scale·q − dmin·min.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * pair, scales);
        let (s2, m2) = scale_min_k4(2 * pair + 1, scales);
        out.extend(q.iter().map(|&v| d * s1 * (v & 0xF) as f32 - dmin * m1));
        out.extend(q.iter().map(|&v| d * s2 * (v >> 4) as f32 - dmin * m2));
    }
}

/// Q4_K's layout plus 32 bytes of fifth bits (bit 2k of byte l for weight l of sub-block 2k,
/// bit 2k+1 for sub-block 2k+1).
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * pair, scales);
        let (s2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (u1, u2) = (1u8 << (2 * pair), 2u8 << (2 * pair));
        out.extend(q.iter().zip(qh).map(|(&v, &h)| {
            let hi = if h & u1 != 0 { 16.0 } else { 0.0 };
            d * s1 * ((v & 0xF) as f32 + hi) - dmin * m1
        }));
        out.extend(q.iter().zip(qh).map(|(&v, &h)| {
            let hi = if h & u2 != 0 { 16.0 } else { 0.0 };
            d * s2 * ((v >> 4) as f32 + hi) - dmin * m2
        }));
    }
}

/// 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales (one per 16
/// weights), d (f16); w = d·scale·(q − 32) with q of 6 bits.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 208);
    let start = out.len();
    out.resize(start + QK_K, 0.0);
    let y = &mut out[start..];
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| sc[is + k] as i8 as f32;
            y[l] = d * s(0) * q1 as f32;
            y[l + 32] = d * s(2) * q2 as f32;
            y[l + 64] = d * s(4) * q3 as f32;
            y[l + 96] = d * s(6) * q4 as f32;
        }
    }
}

/// d (f32), 256 int8, 16 int16 block sums (unused here); w = d q.
fn q8_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    out.extend(b[4..260].iter().map(|&q| d * q as i8 as f32));
}
