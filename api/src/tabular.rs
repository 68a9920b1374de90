//! Tables in and out: CSV (UTF-8, with or without BOM, or GBK as Excel in China saves it) and
//! Excel (`.xlsx`, read with calamine) into rows of named cells; Excel out with rust_xlsxwriter.
//!
//! Header cells are matched to field names through a column list that knows each field's API name
//! and its Chinese header, so a file exported here imports back unchanged.

use std::collections::HashMap;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

use crate::error::{ApiError, RowError};

/// One column of an import/export table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// API field name.
    pub field: &'static str,
    /// Chinese header.
    pub header: &'static str,
    /// Required in imports.
    pub required: bool,
}

/// A data row: its 1-based number (the line or sheet row minus the header) and cells by field.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based data row number.
    pub number: usize,
    /// Cell text by field.
    pub cells: HashMap<&'static str, String>,
}

impl Row {
    /// A cell's trimmed text ("" when absent).
    pub fn get(&self, field: &str) -> &str {
        self.cells.get(field).map(|s| s.trim()).unwrap_or("")
    }
}

/// Most rows one import may carry.
pub const MAX_ROWS: usize = 50_000;

/// Parse an uploaded table. `content_type` picks the format; a ZIP signature means XLSX.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    columns: &[Column],
) -> Result<Vec<Row>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the file is empty"));
    }
    let is_xlsx = bytes.starts_with(b"PK\x03\x04")
        || content_type.is_some_and(|c| c.contains("spreadsheetml") || c.contains("ms-excel"));
    let grid = if is_xlsx {
        read_xlsx(bytes)?
    } else {
        read_csv(bytes)?
    };
    let mut it = grid.into_iter();
    let (_, header) = it
        .next()
        .ok_or_else(|| ApiError::bad_request("the file has no header row"))?;
    let mut map: Vec<Option<&'static str>> = Vec::with_capacity(header.len());
    let mut errors = Vec::new();
    for h in &header {
        let h = h
            .trim()
            .trim_start_matches('\u{feff}')
            .trim_end_matches('*');
        if h.is_empty() {
            map.push(None);
            continue;
        }
        match columns
            .iter()
            .find(|c| c.field.eq_ignore_ascii_case(h) || c.header == h)
        {
            Some(c) => map.push(Some(c.field)),
            None => {
                errors.push(RowError {
                    row: Some(0),
                    field: h.to_string(),
                    message: "unknown column".into(),
                });
                map.push(None);
            }
        }
    }
    for c in columns.iter().filter(|c| c.required) {
        if !map.contains(&Some(c.field)) {
            errors.push(RowError {
                row: Some(0),
                field: c.field.into(),
                message: format!("required column {} ({}) is missing", c.header, c.field),
            });
        }
    }
    if !errors.is_empty() {
        return Err(import_rejected(errors));
    }
    let mut rows = Vec::new();
    for (line, cells) in it {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_ROWS} rows per import"
            )));
        }
        let mut r = Row {
            number: line - 1,
            cells: HashMap::new(),
        };
        for (j, v) in cells.into_iter().enumerate() {
            if let Some(Some(f)) = map.get(j) {
                r.cells.insert(f, v);
            }
        }
        rows.push(r);
    }
    if rows.is_empty() {
        return Err(ApiError::bad_request("the file has no data rows"));
    }
    Ok(rows)
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

/// Rows of cells with the 1-based line (CSV) or sheet row (Excel) each starts on.
type Grid = Vec<(usize, Vec<String>)>;

fn read_csv(bytes: &[u8]) -> Result<Grid, ApiError> {
    let text = decode_text(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ApiError::bad_request(format!("CSV record {}: {e}", i + 1)))?;
        // The reader skips blank lines and miscounts them; count the newlines before the record.
        let line = rec
            .position()
            .map(|p| newlines_before(&text, p.byte() as usize) + 1)
            .unwrap_or(i + 1);
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(out)
}

/// Newlines before the first non-newline byte at or after `byte` (a record's position points
/// just past the previous record, before any blank lines).
fn newlines_before(text: &str, byte: usize) -> usize {
    let b = text.as_bytes();
    let mut start = byte.min(b.len());
    while start < b.len() && (b[start] == b'\n' || b[start] == b'\r') {
        start += 1;
    }
    b[..start].iter().filter(|c| **c == b'\n').count()
}

/// UTF-8 (BOM stripped) when valid, otherwise GBK (GB18030).
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GB18030.decode(bytes).0.into_owned(),
    }
}

fn read_xlsx(bytes: &[u8]) -> Result<Grid, ApiError> {
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(bytes.to_vec()))
        .map_err(|e| ApiError::bad_request(format!("not a readable .xlsx file: {e}")))?;
    let sheet = wb
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the workbook has no sheet"))?;
    let range = wb
        .worksheet_range(&sheet)
        .map_err(|e| ApiError::bad_request(format!("sheet {sheet}: {e}")))?;
    let first_row = range.start().map(|(r, _)| r as usize).unwrap_or(0);
    Ok(range
        .rows()
        .enumerate()
        .map(|(i, r)| {
            let cells = r
                .iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    Data::String(s) => s.clone(),
                    Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
                        format!("{}", *f as i64)
                    }
                    Data::Float(f) => f.to_string(),
                    Data::Int(i) => i.to_string(),
                    Data::Bool(b) => b.to_string(),
                    other => other.to_string(),
                })
                .collect();
            (first_row + i + 1, cells)
        })
        .collect())
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
    fn csv_utf8_bom_and_gbk() {
        let rows = parse(
            "\u{feff}名称,电话\n甲公司,123\n\n乙公司,\n".as_bytes(),
            Some("text/csv"),
            COLS,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("name"), "甲公司");
        assert_eq!(rows[1].number, 3);
        let (gbk, _, _) = encoding_rs::GBK.encode("name,phone\n丙公司,1\n");
        let rows = parse(&gbk, None, COLS).unwrap();
        assert_eq!(rows[0].get("name"), "丙公司");
    }

    #[test]
    fn header_problems_are_reported() {
        let e = parse("电话,颜色\n1,红\n".as_bytes(), None, COLS).unwrap_err();
        assert_eq!(e.code, "import_rejected");
        assert_eq!(e.errors.len(), 2);
        assert!(parse(b"", None, COLS).is_err());
        assert!(parse("名称\n".as_bytes(), None, COLS).is_err());
        assert!(parse(b"PK\x03\x04garbage", None, COLS).is_err());
    }

    #[test]
    fn xlsx_round_trip() {
        let bytes = write_xlsx("t", COLS, &[vec!["甲".into(), "0211".into()]]).unwrap();
        let rows = parse(&bytes, None, COLS).unwrap();
        assert_eq!(rows[0].get("name"), "甲");
        assert_eq!(rows[0].get("phone"), "0211");
    }
}
