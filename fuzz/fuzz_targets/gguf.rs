//! GGUF files: any bytes give a parsed file or an error; every tensor of a parsed file
//! dequantizes to exactly its element count (or is refused as a type without a dequantizer).
#![no_main]

use kiln_gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data.to_vec(), std::path::Path::new("fuzz.gguf")) else {
        return;
    };
    for t in &file.tensors {
        // Skip tensors whose f32 copy would be large: the parser bounds their bytes, not the
        // 8x growth of dequantizing 4-bit blocks.
        if t.len() > 1 << 22 {
            continue;
        }
        if let Ok((shape, values)) = file.dequantize(&t.name) {
            assert_eq!(shape.iter().product::<usize>(), values.len());
            assert_eq!(values.len(), t.len());
        }
    }
});
