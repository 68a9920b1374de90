//! Uploaded import tables (CSV in any encoding, `.xlsx`): parsing never panics, and every row it
//! returns has a number and only known fields.
#![no_main]

#[path = "../../api/src/tabular/read.rs"]
#[allow(dead_code)]
mod read;

use libfuzzer_sys::fuzz_target;
use read::Column;

const COLS: &[Column] = &[
    Column { field: "name", header: "企业名称", required: true },
    Column { field: "uscc", header: "统一社会信用代码", required: false },
    Column { field: "lon", header: "经度", required: false },
];

fuzz_target!(|data: &[u8]| {
    for ct in [None, Some("text/csv"), Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")] {
        if let Ok(rows) = read::parse(data, ct, COLS) {
            assert!(!rows.is_empty());
            for r in &rows {
                assert!(r.cells.keys().all(|k| COLS.iter().any(|c| c.field == *k)));
            }
        }
    }
});
