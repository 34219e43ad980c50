//! # kiln-gguf
//!
//! GGUF files (llama.cpp's format, v1 to v3): header, metadata, tensor infos, alignment and
//! the tensor data, dequantized to f32 on request. No ML framework underneath: kiln-transfer
//! builds Llama models from it, and the fuzz target builds in seconds.
//!
//! Written here rather than taken from a crate: the GGUF readers on crates.io either come
//! inside a second ML framework (candle-core's `quantized::gguf_file`, ~40 dependencies, its
//! own tensor type) or are small unmaintained parsers without K-quant dequantization or
//! bounds checks against hostile files. This one is ~600 lines, checks every count, length
//! and offset against the file before allocating, and keeps each tensor's raw blocks so a
//! quantized kernel can use them without dequantizing.
//!
//! [`GgufWriter`] writes v3 files (F32, F16 and Q8_0 tensors) for exporting models.
//!
//! Every failure is an [`Error::Invalid`] naming the file, the byte offset and what was
//! wrong; nothing panics on bad input (`fuzz/fuzz_targets/gguf.rs` checks it).

mod error;
mod quant;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use quant::{GgmlType, QK_K, dequantize};
pub use write::{GgufWriter, quantize_q8_0};

/// `GGUF` as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// The alignment of the data section when `general.alignment` does not say.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's maximum number of dimensions.
pub const MAX_DIMS: usize = 4;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if it is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The type's name in the GGUF spec.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "uint8",
            Value::I8(_) => "int8",
            Value::U16(_) => "uint16",
            Value::I16(_) => "int16",
            Value::U32(_) => "uint32",
            Value::I32(_) => "int32",
            Value::F32(_) => "float32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "uint64",
            Value::I64(_) => "int64",
            Value::F64(_) => "float64",
        }
    }
}

/// One tensor's description in the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Its dimensions in ggml's order: `dims[0]` varies fastest (a `[out, in]` PyTorch weight
    /// has `dims == [in, out]`).
    pub dims: Vec<u64>,
    /// Its type.
    pub ty: GgmlType,
    /// Where its data starts, relative to the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its shape in row-major order (`[out, in]` for a weight matrix): the dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The bytes of its data.
    pub fn byte_len(&self) -> usize {
        let (per_block, size) = self.ty.block();
        self.len() / per_block * size
    }
}

/// A parsed GGUF file: its metadata, tensor infos and data.
#[derive(Debug)]
pub struct GgufFile {
    /// Where it came from (for error messages).
    pub source: PathBuf,
    /// The format version (2 or 3).
    pub version: u32,
    /// The metadata key-value pairs.
    pub metadata: BTreeMap<String, Value>,
    /// The tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    /// The data section's alignment.
    pub alignment: u64,
    /// Where the data section starts in the file.
    pub data_offset: u64,
    bytes: Vec<u8>,
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    source: &'a Path,
    version: u32,
}

impl<'a> Cursor<'a> {
    fn error(&self, reason: impl Into<String>) -> Error {
        gguf_error(self.source, self.at as u64, reason)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length: u32 in v1, u64 after; at most `remaining / min_size`, since every
    /// item takes at least `min_size` bytes (an absurd count fails here, before allocating).
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let start = self.at;
        let n = if self.version == 1 {
            self.u32(what)?.into()
        } else {
            self.u64(what)?
        };
        let most = self.remaining() / min_size.max(1);
        if n > most as u64 {
            self.at = start;
            return Err(self.error(format!(
                "{what} is {n}, but the {} bytes left hold at most {most}",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(&format!("the length of {what}"), 1)?;
        let start = self.at;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            self.at = start;
            self.error(format!("{what} is not UTF-8"))
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("the value of `{key}`");
        Ok(match ty {
            0 => Value::U8(self.array::<1>(&what())?[0]),
            1 => Value::I8(self.array::<1>(&what())?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what())?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what())?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&what())?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&what())?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what())?)),
            7 => match self.array::<1>(&what())?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    self.at -= 1;
                    return Err(self.error(format!("`{key}`: bool byte {b} is neither 0 nor 1")));
                }
            },
            8 => Value::String(self.string(&what())?),
            9 => {
                if depth > 0 {
                    return Err(self.error(format!(
                        "`{key}`: arrays nested deeper than one level are not supported"
                    )));
                }
                let item = self.u32(&format!("the element type of `{key}`"))?;
                let min = match item {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => {
                        self.at -= 4;
                        return Err(self.error(format!("`{key}`: unknown array element type {t}")));
                    }
                };
                let n = self.count(&format!("the length of `{key}`"), min)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(&what())?)),
            11 => Value::I64(i64::from_le_bytes(self.array(&what())?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what())?)),
            t => {
                self.at -= 4;
                return Err(self.error(format!("`{key}`: unknown value type {t}")));
            }
        })
    }
}

fn gguf_error(source: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Invalid {
        path: source.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

impl GgufFile {
    /// Reads and checks the GGUF file at `path` (the whole file is read into memory).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(bytes, path)
    }

    /// Parses GGUF `bytes`; `source` names them in errors.
    pub fn parse(bytes: Vec<u8>, source: &Path) -> Result<Self> {
        let mut c = Cursor {
            bytes: &bytes,
            at: 0,
            source,
            version: 3,
        };
        let magic = c.u32("the magic number")?;
        if magic != MAGIC {
            return Err(gguf_error(
                source,
                0,
                format!(
                    "wrong magic {:02x?} (a GGUF file starts with `GGUF`)",
                    magic.to_le_bytes()
                ),
            ));
        }
        let version = c.u32("the version")?;
        if !(1..=3).contains(&version) {
            return Err(gguf_error(
                source,
                4,
                format!("unsupported version {version} (1, 2 and 3 are)"),
            ));
        }
        c.version = version;
        // A tensor info takes at least 8 (name length) + 4 + 4 + 8 bytes, a key-value pair
        // 8 (key length) + 4 (type) + 1.
        let n_tensors = c.count("the tensor count", 24)?;
        let n_kv = c.count("the metadata count", 13)?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}"))?;
            let ty = c.u32(&format!("the type of `{key}`"))?;
            let value = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(c.error(format!("metadata key `{key}` appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => {
                    return Err(c.error(format!("general.alignment {v:?} is not a power of two")));
                }
            },
        };
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
        let mut names = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("the name of tensor {i}"))?;
            let n_dims = c.u32(&format!("the dimension count of `{name}`"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.error(format!(
                    "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for d in 0..n_dims {
                dims.push(c.u64(&format!("dimension {d} of `{name}`"))?);
            }
            if dims.contains(&0) {
                return Err(c.error(format!(
                    "tensor `{name}` has a zero dimension ({dims:?}; ggml dimensions are at least 1)"
                )));
            }
            let id = c.u32(&format!("the type of `{name}`"))?;
            let ty = GgmlType::from_id(id)
                .ok_or_else(|| c.error(format!("tensor `{name}` has unknown type {id}")))?;
            let offset = c.u64(&format!("the offset of `{name}`"))?;
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= bytes.len() as u64 * 8)
                .ok_or_else(|| {
                    c.error(format!(
                        "tensor `{name}`: dimensions {dims:?} are more elements than the file could hold"
                    ))
                })?;
            let (per_block, _) = ty.block();
            if dims[0] % per_block as u64 != 0 {
                return Err(c.error(format!(
                    "tensor `{name}`: first dimension {} is not a multiple of {}'s block of {per_block}",
                    dims[0],
                    ty.name()
                )));
            }
            if offset % alignment != 0 {
                return Err(c.error(format!(
                    "tensor `{name}`: offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let _ = elements;
            if !names.insert(name.clone()) {
                return Err(c.error(format!("tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let data_offset = (c.at as u64).div_ceil(alignment) * alignment;
        if !tensors.is_empty() && data_offset > bytes.len() as u64 {
            return Err(gguf_error(
                source,
                bytes.len() as u64,
                format!(
                    "truncated: the tensor data would start at byte {data_offset} (after alignment to {alignment}), past the end of the file ({} bytes)",
                    bytes.len()
                ),
            ));
        }
        let data_len = (bytes.len() as u64).saturating_sub(data_offset);
        for t in &tensors {
            let end = t.offset.checked_add(t.byte_len() as u64);
            if end.is_none_or(|end| end > data_len) {
                return Err(gguf_error(
                    source,
                    data_offset.saturating_add(t.offset),
                    format!(
                        "tensor `{}` ({} {:?}, {} bytes at data offset {}) runs past the end of the file ({} bytes of data)",
                        t.name,
                        t.ty.name(),
                        t.shape(),
                        t.byte_len(),
                        t.offset,
                        data_len
                    ),
                ));
            }
        }
        Ok(GgufFile {
            source: source.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| {
            gguf_error(
                &self.source,
                0,
                format!(
                    "no tensor `{name}` ({} tensors in the file)",
                    self.tensors.len()
                ),
            )
        })
    }

    /// The raw bytes of a tensor (its blocks as stored, for kernels that use them directly).
    pub fn raw(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.bytes[start..start + info.byte_len()]
    }

    /// The tensor called `name` dequantized to f32, with its row-major shape.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.tensor(name)?;
        let mut out = Vec::new();
        dequantize(info.ty, self.raw(info), &mut out).ok_or_else(|| {
            gguf_error(
                &self.source,
                self.data_offset + info.offset,
                format!(
                    "tensor `{name}` is {}, which Kiln cannot dequantize (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K)",
                    info.ty.name()
                ),
            )
        })?;
        Ok((info.shape(), out))
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The metadata value of `key`, required.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| gguf_error(&self.source, 0, format!("metadata `{key}` is missing")))
    }

    /// A required unsigned integer.
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| {
            gguf_error(
                &self.source,
                0,
                format!("metadata `{key}` is a {}, not an integer", v.type_name()),
            )
        })
    }

    /// A required string.
    pub fn require_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| {
            gguf_error(
                &self.source,
                0,
                format!("metadata `{key}` is a {}, not a string", v.type_name()),
            )
        })
    }

    /// A required array of strings.
    pub fn require_strings(&self, key: &str) -> Result<Vec<&str>> {
        let bad = |what: &str| gguf_error(&self.source, 0, format!("metadata `{key}` is {what}"));
        let items = self
            .require(key)?
            .as_array()
            .ok_or_else(|| bad("not an array"))?;
        items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| bad("not an array of strings")))
            .collect()
    }

    /// An error about this file (for the loaders built on it).
    pub fn error(&self, reason: impl Into<String>) -> Error {
        gguf_error(&self.source, 0, reason)
    }
}
