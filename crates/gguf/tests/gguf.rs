//! The GGUF reader on files and blocks built by hand: every metadata type, v2 and v3,
//! alignment, each dequantized type against values worked out from the block layout, and
//! malformed files (each an error naming what is wrong, never a panic).

use std::path::Path;

use half::{bf16, f16};
use kiln_gguf::{Error, GgmlType, GgufFile, Value, dequantize};

/// Writes GGUF files for the tests.
struct Writer {
    version: u32,
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    alignment: u64,
}

fn string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

impl Writer {
    fn new(version: u32) -> Self {
        Self {
            version,
            kv: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }

    fn kv(mut self, key: &str, ty: u32, value: Vec<u8>) -> Self {
        self.kv.push((key.into(), ty, value));
        self
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kv.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kv {
            b.extend(string(k));
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            b.extend(string(name));
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(self.alignment) * self.alignment;
        }
        while !(b.len() as u64).is_multiple_of(self.alignment) {
            b.push(0);
        }
        let start = b.len();
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            b.resize(start + off as usize, 0);
            b.extend(data);
        }
        b
    }
}

fn parse(bytes: Vec<u8>) -> kiln_gguf::Result<GgufFile> {
    GgufFile::parse(bytes, Path::new("test.gguf"))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn every_type() -> Writer {
    let mut array = 8u32.to_le_bytes().to_vec();
    array.extend(2u64.to_le_bytes());
    array.extend(string("a"));
    array.extend(string("bc"));
    let mut ints = 5u32.to_le_bytes().to_vec();
    ints.extend(3u64.to_le_bytes());
    for v in [-1i32, 0, 7] {
        ints.extend(v.to_le_bytes());
    }
    Writer::new(3)
        .kv("u8", 0, vec![200])
        .kv("i8", 1, vec![0xFF])
        .kv("u16", 2, 60_000u16.to_le_bytes().to_vec())
        .kv("i16", 3, (-300i16).to_le_bytes().to_vec())
        .kv("u32", 4, 4_000_000_000u32.to_le_bytes().to_vec())
        .kv("i32", 5, (-5i32).to_le_bytes().to_vec())
        .kv("f32", 6, 1.5f32.to_le_bytes().to_vec())
        .kv("bool", 7, vec![1])
        .kv("string", 8, string("héllo"))
        .kv("strings", 9, array)
        .kv("ints", 9, ints)
        .kv("u64", 10, u64::MAX.to_le_bytes().to_vec())
        .kv("i64", 11, i64::MIN.to_le_bytes().to_vec())
        .kv("f64", 12, 0.25f64.to_le_bytes().to_vec())
}

#[test]
fn every_metadata_type_reads_back() {
    let file = parse(every_type().bytes()).unwrap();
    let m = &file.metadata;
    assert_eq!(m["u8"], Value::U8(200));
    assert_eq!(m["i8"], Value::I8(-1));
    assert_eq!(m["u16"], Value::U16(60_000));
    assert_eq!(m["i16"], Value::I16(-300));
    assert_eq!(m["u32"], Value::U32(4_000_000_000));
    assert_eq!(m["i32"], Value::I32(-5));
    assert_eq!(m["f32"], Value::F32(1.5));
    assert_eq!(m["bool"], Value::Bool(true));
    assert_eq!(m["string"], Value::String("héllo".into()));
    assert_eq!(
        m["strings"],
        Value::Array(vec![Value::String("a".into()), Value::String("bc".into())])
    );
    assert_eq!(
        m["ints"],
        Value::Array(vec![Value::I32(-1), Value::I32(0), Value::I32(7)])
    );
    assert_eq!(m["u64"], Value::U64(u64::MAX));
    assert_eq!(m["i64"], Value::I64(i64::MIN));
    assert_eq!(m["f64"], Value::F64(0.25));
    assert_eq!(m["i32"].as_u64(), None, "a negative integer is not a count");
    assert_eq!(m["u16"].as_u64(), Some(60_000));
}

#[test]
fn tensors_alignment_and_versions() {
    for version in [2, 3] {
        let mut w = Writer::new(version)
            .kv("general.alignment", 4, 64u32.to_le_bytes().to_vec())
            .tensor("a", &[3], 0, f32_bytes(&[1.0, 2.0, 3.0]))
            .tensor("b", &[2, 2], 0, f32_bytes(&[4.0, 5.0, 6.0, 7.0]));
        w.alignment = 64;
        let file = parse(w.bytes()).unwrap();
        assert_eq!((file.version, file.alignment), (version, 64));
        assert_eq!(file.data_offset % 64, 0);
        assert_eq!(file.tensors[1].offset, 64);
        assert_eq!(
            file.dequantize("a").unwrap(),
            (vec![3], vec![1.0, 2.0, 3.0])
        );
        // ggml's dims are fastest first; the shape is row-major.
        assert_eq!(file.tensors[1].shape(), vec![2, 2]);
        assert_eq!(file.dequantize("b").unwrap().1, vec![4.0, 5.0, 6.0, 7.0]);
        let missing = file.dequantize("c").unwrap_err().to_string();
        assert!(missing.contains("no tensor `c`"), "{missing}");
    }
}

fn deq(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::new();
    dequantize(ty, bytes, &mut out).expect("whole blocks of a supported type");
    out
}

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

#[test]
fn float_types() {
    let f16s: Vec<u8> = [1.0f32, -2.5, 65504.0].iter().flat_map(|&v| h(v)).collect();
    assert_eq!(deq(GgmlType::F16, &f16s), vec![1.0, -2.5, 65504.0]);
    let bf16s: Vec<u8> = [1.0f32, -3.0, 1e30]
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let got = deq(GgmlType::Bf16, &bf16s);
    assert_eq!(&got[..2], &[1.0, -3.0]);
    assert!((got[2] / 1e30 - 1.0).abs() < 1e-2);
    assert_eq!(
        deq(GgmlType::F32, &f32_bytes(&[0.1, -7.0])),
        vec![0.1, -7.0]
    );
}

/// Nibbles of `q` (32 values < 16): byte j holds weight j (low) and weight j + 16 (high).
fn nibbles(q: &[u8]) -> Vec<u8> {
    (0..16).map(|j| q[j] | (q[j + 16] << 4)).collect()
}

#[test]
fn q4_0_and_q4_1() {
    let q: Vec<u8> = (0..32).map(|i| (i * 7 % 16) as u8).collect();
    let mut b = h(0.5).to_vec();
    b.extend(nibbles(&q));
    let got = deq(GgmlType::Q4_0, &b);
    let want: Vec<f32> = q.iter().map(|&v| 0.5 * (v as f32 - 8.0)).collect();
    assert_eq!(got, want);

    let mut b = h(0.25).to_vec();
    b.extend(h(-1.0));
    b.extend(nibbles(&q));
    let want: Vec<f32> = q.iter().map(|&v| 0.25 * v as f32 - 1.0).collect();
    assert_eq!(deq(GgmlType::Q4_1, &b), want);
}

#[test]
fn q5_0_and_q5_1() {
    // 5-bit values: the fifth bit of weight j is bit j of qh.
    let q: Vec<u8> = (0..32).map(|i| (i * 11 % 32) as u8).collect();
    let qh: u32 = q
        .iter()
        .enumerate()
        .map(|(j, &v)| u32::from(v >> 4) << j)
        .sum();
    let low: Vec<u8> = q.iter().map(|v| v & 0xF).collect();
    let mut b = h(2.0).to_vec();
    b.extend(qh.to_le_bytes());
    b.extend(nibbles(&low));
    let want: Vec<f32> = q.iter().map(|&v| 2.0 * (v as f32 - 16.0)).collect();
    assert_eq!(deq(GgmlType::Q5_0, &b), want);

    let mut b = h(0.5).to_vec();
    b.extend(h(3.0));
    b.extend(qh.to_le_bytes());
    b.extend(nibbles(&low));
    let want: Vec<f32> = q.iter().map(|&v| 0.5 * v as f32 + 3.0).collect();
    assert_eq!(deq(GgmlType::Q5_1, &b), want);
}

#[test]
fn q8_0_and_q8_k() {
    let q: Vec<i8> = (0..32).map(|i| (i * 9 - 128) as i8).collect();
    let mut b = h(0.125).to_vec();
    b.extend(q.iter().map(|&v| v as u8));
    let want: Vec<f32> = q.iter().map(|&v| 0.125 * v as f32).collect();
    assert_eq!(deq(GgmlType::Q8_0, &b), want);

    let q: Vec<i8> = (0..256).map(|i: i32| (i - 128) as i8).collect();
    let mut b = 0.01f32.to_le_bytes().to_vec();
    b.extend(q.iter().map(|&v| v as u8));
    b.extend([0u8; 32]); // block sums, unused for dequantization
    let want: Vec<f32> = q.iter().map(|&v| 0.01 * v as f32).collect();
    assert_eq!(deq(GgmlType::Q8K, &b), want);
}

/// Packs 8 six-bit scales and mins into the K-quants' 12 bytes.
fn pack_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    q
}

#[test]
fn q4_k_and_q5_k() {
    let sc = [1u8, 5, 17, 63, 2, 33, 48, 60];
    let m = [0u8, 3, 62, 9, 21, 40, 1, 63];
    let (d, dmin) = (0.5f32, 0.25f32);
    // Weight i of sub-block s (32 each): a 4-bit (Q4_K) or 5-bit (Q5_K) value.
    let value4 = |s: usize, i: usize| ((s * 3 + i * 5) % 16) as u8;
    let value5 = |s: usize, i: usize| ((s * 7 + i * 3) % 32) as u8;
    // Q4_K: each 32 bytes hold sub-block 2p (low nibbles) and 2p + 1 (high nibbles).
    let mut b = h(d).to_vec();
    b.extend(h(dmin));
    b.extend(pack_scales(&sc, &m));
    for p in 0..4 {
        b.extend((0..32).map(|i| value4(2 * p, i) | (value4(2 * p + 1, i) << 4)));
    }
    let want: Vec<f32> = (0..256)
        .map(|k| {
            let (s, i) = (k / 32, k % 32);
            d * sc[s] as f32 * value4(s, i) as f32 - dmin * m[s] as f32
        })
        .collect();
    assert_eq!(deq(GgmlType::Q4K, &b), want);

    // Q5_K: the fifth bit of weight i of sub-block s is bit s of qh[i].
    let mut b = h(d).to_vec();
    b.extend(h(dmin));
    b.extend(pack_scales(&sc, &m));
    b.extend((0..32).map(|i| (0..8).map(|s| (value5(s, i) >> 4) << s).sum::<u8>()));
    for p in 0..4 {
        b.extend((0..32).map(|i| (value5(2 * p, i) & 0xF) | ((value5(2 * p + 1, i) & 0xF) << 4)));
    }
    let want: Vec<f32> = (0..256)
        .map(|k| {
            let (s, i) = (k / 32, k % 32);
            d * sc[s] as f32 * value5(s, i) as f32 - dmin * m[s] as f32
        })
        .collect();
    assert_eq!(deq(GgmlType::Q5K, &b), want);
}

#[test]
fn q6_k() {
    // 6-bit values q (stored q, weight d·scale·(q − 32)), one int8 scale per 16 weights.
    let value = |k: usize| ((k * 13 + 5) % 64) as u8;
    let scales: Vec<i8> = (0..16).map(|i| (i as i8 - 8) * 3).collect();
    let d = 0.5f32;
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    // Within each half of 128 weights: weight l (l < 32) + 32·r, r = 0..4, keeps its low
    // nibble in ql[l + 32·(r % 2)] (low nibble for r < 2, high for r >= 2) and its two high
    // bits in qh[l] at bit 2r.
    for half in 0..2 {
        for r in 0..4 {
            for l in 0..32 {
                let q = value(128 * half + 32 * r + l);
                let at = 64 * half + l + 32 * (r % 2);
                ql[at] |= if r < 2 { q & 0xF } else { (q & 0xF) << 4 };
                qh[32 * half + l] |= (q >> 4) << (2 * r);
            }
        }
    }
    let mut b = ql.to_vec();
    b.extend(qh);
    b.extend(scales.iter().map(|&s| s as u8));
    b.extend(h(d));
    let want: Vec<f32> = (0..256)
        .map(|k| d * scales[k / 16] as f32 * (value(k) as f32 - 32.0))
        .collect();
    assert_eq!(deq(GgmlType::Q6K, &b), want);
}

#[test]
fn unsupported_and_partial_blocks_are_refused() {
    let mut out = Vec::new();
    assert!(dequantize(GgmlType::Q2K, &[0u8; 84], &mut out).is_none());
    assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out).is_none());
    let file = Writer::new(3)
        .tensor("iq", &[256], 16, vec![0u8; 66])
        .bytes();
    let err = parse(file)
        .unwrap()
        .dequantize("iq")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("IQ2_XXS") && err.contains("cannot dequantize"),
        "{err}"
    );
}

fn error_of(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Err(e @ Error::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("not a GGUF error: {e}"),
        Ok(_) => panic!("parsed a malformed file"),
    }
}

#[test]
fn malformed_files_are_errors_naming_the_problem() {
    let good = Writer::new(3)
        .kv("name", 8, string("x"))
        .tensor("w", &[32, 2], 8, vec![0u8; 68])
        .bytes();
    assert!(parse(good.clone()).is_ok());

    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(error_of(bad).contains("wrong magic"));

    let mut bad = good.clone();
    bad[4] = 9;
    assert!(error_of(bad).contains("unsupported version 9"));

    // Every truncation is an error (none panics).
    for len in 0..good.len() {
        let e = error_of(good[..len].to_vec());
        assert!(
            e.contains("truncated") || e.contains("past the end") || e.contains("hold at most"),
            "{len}: {e}"
        );
    }

    // A tensor count that would allocate terabytes fails before allocating.
    let mut bad = good.clone();
    bad[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(error_of(bad).contains("the tensor count is 1099511627776"));

    // A string length past the end of the file.
    let mut bad = good.clone();
    bad[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(error_of(bad).contains("hold at most"));

    let e = error_of(Writer::new(3).kv("k", 99, vec![0]).bytes());
    assert!(e.contains("`k`: unknown value type 99"), "{e}");
    let e = error_of(Writer::new(3).kv("b", 7, vec![2]).bytes());
    assert!(e.contains("bool byte 2"), "{e}");
    let e = error_of(Writer::new(3).tensor("t", &[32], 77, vec![0u8; 32]).bytes());
    assert!(e.contains("tensor `t` has unknown type 77"), "{e}");
    let e = error_of(
        Writer::new(3)
            .tensor("t", &[1 << 31, 1 << 31, 1 << 31], 0, vec![])
            .bytes(),
    );
    assert!(e.contains("more elements than the file could hold"), "{e}");
    let e = error_of(
        Writer::new(3)
            .tensor("t", &[1, 1, 1, 1, 1], 0, vec![])
            .bytes(),
    );
    assert!(e.contains("5 dimensions"), "{e}");
    let e = error_of(Writer::new(3).tensor("t", &[16], 8, vec![0u8; 34]).bytes());
    assert!(e.contains("not a multiple of Q8_0's block of 32"), "{e}");
    let e = error_of(
        Writer::new(3)
            .kv("general.alignment", 4, 3u32.to_le_bytes().to_vec())
            .bytes(),
    );
    assert!(e.contains("not a power of two"), "{e}");
    let e = error_of(
        Writer::new(3)
            .kv("a", 4, vec![0; 4])
            .kv("a", 4, vec![0; 4])
            .bytes(),
    );
    assert!(e.contains("`a` appears twice"), "{e}");
    // Found by the fuzzer: a file that ends before its data section's aligned start, and a
    // zero dimension beside huge ones (whose product overflows in the other order).
    let e = error_of(Writer::new(2).tensor("f16", &[1, 1], 1, vec![]).bytes()[..72].to_vec());
    assert!(e.contains("past the end of the file"), "{e}");
    let e = error_of(
        Writer::new(3)
            .tensor("z", &[0, 1 << 40, 1 << 40], 0, vec![])
            .bytes(),
    );
    assert!(e.contains("zero dimension"), "{e}");
    // Tensor data past the end of the file.
    let mut bad = good.clone();
    bad.truncate(bad.len() - 1);
    let e = error_of(bad);
    assert!(
        e.contains("tensor `w`") && e.contains("past the end"),
        "{e}"
    );
}

/// The fuzz target's seed files (`fuzz/seeds/gguf`) are these hand-built files, and they
/// parse: the seeds cannot drift from the format the reader accepts. With
/// `KILN_WRITE_FUZZ_SEEDS=1` the test writes them instead.
#[test]
fn fuzz_seeds_are_the_hand_built_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/gguf");
    let write = std::env::var_os("KILN_WRITE_FUZZ_SEEDS").is_some();
    let q8: Vec<u8> = [h(0.5).to_vec(), (0..32u8).collect()].concat();
    let mut q4k = h(1.0).to_vec();
    q4k.extend(h(0.5));
    q4k.extend(pack_scales(
        &[1, 2, 3, 4, 5, 6, 7, 8],
        &[8, 7, 6, 5, 4, 3, 2, 1],
    ));
    q4k.extend((0..128).map(|i| i as u8));
    let files = [
        ("metadata.gguf", every_type().bytes()),
        (
            "tensors.gguf",
            Writer::new(3)
                .kv("general.architecture", 8, string("llama"))
                .tensor("f32", &[4], 0, f32_bytes(&[1.0, 2.0, 3.0, 4.0]))
                .tensor("q8", &[32], 8, q8)
                .tensor("q4k", &[256], 12, q4k)
                .bytes(),
        ),
        (
            "v2.gguf",
            Writer::new(2)
                .tensor("f16", &[2], 1, [h(1.0), h(2.0)].concat())
                .bytes(),
        ),
    ];
    for (name, bytes) in files {
        parse(bytes.clone()).unwrap();
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (KILN_WRITE_FUZZ_SEEDS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(committed, bytes, "{name} differs from its hand-built file");
    }
}
