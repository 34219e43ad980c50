//! CSV tables: any text gives a table or an error; fitting and applying an encoder on a table
//! (last column as target) gives finite features of the announced width, or an error.
#![no_main]

use kiln_data::tabular::{Encoding, Table, TableEncoder, TableSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(table) = Table::parse_csv(std::path::Path::new("fuzz.csv"), text) else { return };
    assert!(table.rows.iter().all(|r| r.len() == table.columns.len()));
    let Some(target) = table.columns.last().cloned() else { return };
    let rows: Vec<usize> = (0..table.len()).collect();
    for encoding in [Encoding::OneHot, Encoding::Index] {
        let spec = TableSpec { encoding, ..TableSpec::target(&target) };
        if let Ok(encoder) = TableEncoder::fit(&table, &spec, &rows)
            && let Ok(set) = encoder.transform(&table, &rows)
        {
            assert_eq!(set.features.len(), set.len() * encoder.width());
            assert!(set.features.iter().all(|v| v.is_finite()));
        }
    }
});
