//! Tables in and out: uploaded CSV/Excel read by [`read`] into rows of named cells, errors
//! mapped to the API's error body; Excel out with rust_xlsxwriter.
//!
//! Header cells are matched to field names through a column list that knows each field's API name
//! and its Chinese header, so a file exported here imports back unchanged.

pub mod read;

pub use read::{Column, ReadError, Row, MAX_ROWS};

use crate::error::{ApiError, RowError};

/// Parse an uploaded table, answering 4xx errors that name the problem.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    columns: &[Column],
) -> Result<Vec<Row>, ApiError> {
    read::parse(bytes, content_type, columns).map_err(|e| match e {
        ReadError::Header(problems) => import_rejected(
            problems
                .into_iter()
                .map(|(field, message)| RowError {
                    row: Some(0),
                    field,
                    message,
                })
                .collect(),
        ),
        other => ApiError::bad_request(other.to_string()),
    })
}

/// The 422 answer of an import with bad rows: nothing was imported.
pub fn import_rejected(errors: Vec<RowError>) -> ApiError {
    let n = errors
        .iter()
        .filter_map(|e| e.row)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut e = ApiError::validation(errors);
    e.code = "import_rejected";
    e.message = format!(
        "nothing was imported: {n} row(s) have errors; {}",
        e.message
    );
    e
}

/// Write one sheet with a bold header row.
pub fn write_xlsx(
    sheet: &str,
    columns: &[Column],
    rows: &[Vec<String>],
) -> anyhow::Result<Vec<u8>> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet)?;
    let bold = Format::new().set_bold();
    for (j, c) in columns.iter().enumerate() {
        ws.write_string_with_format(0, j as u16, c.header, &bold)?;
        ws.set_column_width(j as u16, 16)?;
    }
    for (i, r) in rows.iter().enumerate() {
        for (j, v) in r.iter().enumerate() {
            ws.write_string((i + 1) as u32, j as u16, v)?;
        }
    }
    Ok(wb.save_to_buffer()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: &[Column] = &[
        Column {
            field: "name",
            header: "名称",
            required: true,
        },
        Column {
            field: "phone",
            header: "电话",
            required: false,
        },
    ];

    #[test]
    fn xlsx_round_trip() {
        let bytes = write_xlsx("t", COLS, &[vec!["甲".into(), "0211".into()]]).unwrap();
        let rows = parse(&bytes, None, COLS).unwrap();
        assert_eq!(rows[0].get("name"), "甲");
        assert_eq!(rows[0].get("phone"), "0211");
    }

    #[test]
    fn header_errors_become_an_import_report() {
        let e = parse("电话,颜色\n1,红\n".as_bytes(), None, COLS).unwrap_err();
        assert_eq!(e.code, "import_rejected");
        assert_eq!(e.errors.len(), 2);
        assert_eq!(parse(b"", None, COLS).unwrap_err().code, "bad_request");
    }
}
