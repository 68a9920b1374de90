//! Reading uploaded tables: CSV (UTF-8 with or without BOM, or GBK/GB18030 as Excel in China
//! saves it) and Excel `.xlsx` (calamine) into data rows of named cells.
//!
//! Pure: bytes in, rows or a [`ReadError`] out; no HTTP, no I/O. The fuzz target `table` includes
//! this file directly, so it depends on nothing of the crate.

use std::collections::HashMap;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};

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

/// Why a table could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Zero bytes.
    Empty,
    /// No header row.
    NoHeader,
    /// A header but no data rows.
    NoRows,
    /// More than [`MAX_ROWS`] data rows.
    TooManyRows,
    /// The CSV is malformed.
    Csv(String),
    /// The workbook cannot be read.
    Xlsx(String),
    /// Unknown or missing columns: (column, problem).
    Header(Vec<(String, String)>),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Empty => f.write_str("the file is empty"),
            ReadError::NoHeader => f.write_str("the file has no header row"),
            ReadError::NoRows => f.write_str("the file has no data rows"),
            ReadError::TooManyRows => write!(f, "at most {MAX_ROWS} rows per import"),
            ReadError::Csv(m) => write!(f, "malformed CSV: {m}"),
            ReadError::Xlsx(m) => write!(f, "not a readable .xlsx file: {m}"),
            ReadError::Header(p) => {
                let parts: Vec<String> = p.iter().map(|(c, m)| format!("{c}: {m}")).collect();
                write!(f, "header: {}", parts.join("; "))
            }
        }
    }
}

/// Parse an uploaded table. `content_type` picks the format; a ZIP signature means XLSX.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    columns: &[Column],
) -> Result<Vec<Row>, ReadError> {
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }
    let is_xlsx = bytes.starts_with(b"PK\x03\x04")
        || content_type.is_some_and(|c| c.contains("spreadsheetml") || c.contains("ms-excel"));
    let grid = if is_xlsx {
        read_xlsx(bytes)?
    } else {
        read_csv(bytes)?
    };
    let mut it = grid.into_iter();
    let (_, header) = it.next().ok_or(ReadError::NoHeader)?;
    let mut map: Vec<Option<&'static str>> = Vec::with_capacity(header.len());
    let mut problems = Vec::new();
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
                problems.push((h.to_string(), "unknown column".to_string()));
                map.push(None);
            }
        }
    }
    for c in columns.iter().filter(|c| c.required) {
        if !map.contains(&Some(c.field)) {
            problems.push((
                c.field.to_string(),
                format!("required column {} ({}) is missing", c.header, c.field),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ReadError::Header(problems));
    }
    let mut rows = Vec::new();
    for (line, cells) in it {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(ReadError::TooManyRows);
        }
        let mut r = Row {
            number: line.saturating_sub(1),
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
        return Err(ReadError::NoRows);
    }
    Ok(rows)
}

/// Rows of cells with the 1-based line (CSV) or sheet row (Excel) each starts on.
type Grid = Vec<(usize, Vec<String>)>;

fn read_csv(bytes: &[u8]) -> Result<Grid, ReadError> {
    let text = decode_text(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| ReadError::Csv(format!("record {}: {e}", i + 1)))?;
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

fn read_xlsx(bytes: &[u8]) -> Result<Grid, ReadError> {
    let mut wb: Xlsx<_> =
        Xlsx::new(Cursor::new(bytes.to_vec())).map_err(|e| ReadError::Xlsx(e.to_string()))?;
    let sheet = wb
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| ReadError::Xlsx("the workbook has no sheet".into()))?;
    let range = wb
        .worksheet_range(&sheet)
        .map_err(|e| ReadError::Xlsx(format!("sheet {sheet}: {e}")))?;
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
        assert!(
            matches!(e, ReadError::Header(ref p) if p.len() == 2),
            "{e:?}"
        );
        assert!(parse(b"", None, COLS).is_err());
        assert!(parse("名称\n".as_bytes(), None, COLS).is_err());
        assert!(parse(b"PK\x03\x04garbage", None, COLS).is_err());
    }

    #[test]
    fn multi_line_cells_keep_row_numbers() {
        let rows = parse("名称,电话\n\"甲\n公司\",1\n乙,2\n".as_bytes(), None, COLS).unwrap();
        assert_eq!(rows[0].get("name"), "甲\n公司");
        assert_eq!(rows[1].number, 3);
    }
}
