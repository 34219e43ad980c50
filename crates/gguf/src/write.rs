//! Writing GGUF v3 files: metadata, tensor infos and data, each tensor's data aligned to
//! `general.alignment`; tensors stored as F32, F16 or Q8_0 (ggml's reference rounding:
//! `d = max|x| / 127` as f16, `q = round(x / d)`).

use std::io::Write;
use std::path::Path;

use half::f16;

use crate::quant::GgmlType;
use crate::{DEFAULT_ALIGNMENT, Error, MAGIC, Result, Value};

/// A GGUF file being assembled in memory, written by [`GgufWriter::write`].
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    }
}

/// The GGUF id of a value's type.
fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) -> std::result::Result<(), String> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend(x.to_le_bytes()),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
        Value::Array(items) => {
            // An empty array keeps a type; ggml writers use int32 for none in particular.
            let ty = items.first().map_or(5, value_type);
            if items.iter().any(|i| value_type(i) != ty) {
                return Err("an array mixes element types".into());
            }
            out.extend(ty.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}

/// The Q8_0 blocks of `values` (a multiple of 32 long).
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
    out
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets metadata `key` (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &str, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// Adds tensor `name` of row-major `shape` (`[out, in]` for a weight matrix; GGUF stores
    /// the dims reversed) from f32 `values`, stored as `ty` (F32, F16 or Q8_0; Q8_0 needs a
    /// last dimension that is a multiple of 32).
    pub fn add_tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
        ty: GgmlType,
    ) -> std::result::Result<(), String> {
        let len: usize = shape.iter().product();
        if len != values.len() {
            return Err(format!(
                "tensor `{name}`: shape {shape:?} holds {len} values, given {}",
                values.len()
            ));
        }
        if shape.is_empty() || shape.len() > crate::MAX_DIMS {
            return Err(format!(
                "tensor `{name}`: {} dimensions (1 to 4)",
                shape.len()
            ));
        }
        if self.tensors.iter().any(|t| t.0 == name) {
            return Err(format!("tensor `{name}` is added twice"));
        }
        let bytes = match ty {
            GgmlType::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            GgmlType::F16 => values
                .iter()
                .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                .collect(),
            GgmlType::Q8_0 => {
                let row = *shape.last().unwrap_or(&0);
                if !row.is_multiple_of(32) {
                    return Err(format!(
                        "tensor `{name}`: Q8_0 needs rows of a multiple of 32 values, its are {row}"
                    ));
                }
                quantize_q8_0(values)
            }
            other => {
                return Err(format!(
                    "tensor `{name}`: writing {} is not supported (F32, F16, Q8_0 are)",
                    other.name()
                ));
            }
        };
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.to_string(), dims, ty, bytes));
        Ok(())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        let alignment = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT) as usize;
        if alignment == 0 || !alignment.is_multiple_of(8) {
            return Err(format!(
                "general.alignment {alignment} is not a multiple of 8"
            ));
        }
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend(value_type(value).to_le_bytes());
            put_value(&mut out, value).map_err(|e| format!("metadata `{key}`: {e}"))?;
        }
        let mut offset = 0usize;
        for (name, dims, ty, bytes) in &self.tensors {
            put_string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.id().to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset = (offset + bytes.len()).next_multiple_of(alignment);
        }
        out.resize(out.len().next_multiple_of(alignment), 0);
        for (_, _, _, bytes) in &self.tensors {
            out.extend(bytes);
            out.resize(out.len().next_multiple_of(alignment), 0);
        }
        Ok(out)
    }

    /// Writes the file to `path` (through a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes().map_err(|e| invalid(path, e))?;
        let io = |e: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let tmp = path.with_extension("gguf.partial");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)
    }
}
