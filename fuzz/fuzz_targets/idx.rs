//! IDX parser: any bytes give an array or an error, never a panic; an array's data length is
//! the product of its dimensions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.idx");
    for dims in [1, 3] {
        if let Ok(array) = kiln_data::idx::parse_idx(path, data, dims) {
            assert_eq!(array.dims.len(), dims);
            assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
        }
    }
});
