//! The same document as Word (Office Open XML, `.docx`): a minimal WordprocessingML package
//! (content types, relationships, core properties, one document part) that Word, WPS and
//! LibreOffice open, with 宋体 as the East Asian font and A4 pages.

use std::io::Write as _;

use super::{Block, Document};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Characters XML 1.0 cannot carry are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// One paragraph: alignment (`left`, `center`, `right`), size in half-points, text, indent.
fn para(align: &str, half_points: u32, text: &str, first_line_indent: bool) -> String {
    let ind = if first_line_indent {
        r#"<w:ind w:firstLineChars="200" w:firstLine="480"/>"#
    } else {
        ""
    };
    format!(
        r#"<w:p><w:pPr><w:jc w:val="{align}"/><w:spacing w:after="120"/>{ind}</w:pPr><w:r><w:rPr><w:rFonts w:ascii="SimSun" w:hAnsi="SimSun" w:eastAsia="宋体"/><w:sz w:val="{half_points}"/><w:szCs w:val="{half_points}"/></w:rPr><w:t xml:space="preserve">{}</w:t></w:r></w:p>"#,
        esc(text)
    )
}

/// Render `doc`; `created` is an RFC 3339 time for the core properties.
pub fn render(doc: &Document, created: &str) -> Vec<u8> {
    let mut body = String::new();
    body.push_str(&para("center", 28, &doc.issuer, false));
    body.push_str(&para("center", 40, &doc.title, false));
    body.push_str(&para("right", 22, &doc.number, false));
    for b in &doc.blocks {
        match b {
            Block::Field(label, value) => {
                body.push_str(&para("left", 24, &format!("{label}：{value}"), false))
            }
            Block::Paragraph(text) => {
                for p in text.split('\n') {
                    body.push_str(&para("both", 24, p.trim(), true));
                }
            }
            Block::Gap => body.push_str(&para("left", 24, "", false)),
        }
    }
    body.push_str(&para("left", 24, "", false));
    body.push_str(&para("right", 24, &doc.issuer, false));
    body.push_str(&para("right", 24, &doc.date, false));
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}<w:sectPr><w:pgSz w:w="11906" w:h="16838"/><w:pgMar w:top="1440" w:right="1440" w:bottom="1440" w:left="1440" w:header="851" w:footer="992" w:gutter="0"/></w:sectPr></w:body></w:document>"#
    );
    let core = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:title>{}</dc:title><dc:subject>{}</dc:subject><dc:creator>Shouhu</dc:creator><dcterms:created xsi:type="dcterms:W3CDTF">{created}</dcterms:created></cp:coreProperties>"#,
        esc(&doc.title),
        esc(&doc.number)
    );
    let parts: [(&str, String); 4] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/><Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>"#
                .to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/></Relationships>"#
                .to_string(),
        ),
        ("docProps/core.xml", core),
        ("word/document.xml", document),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        // A fixed timestamp: the same document renders to the same bytes.
        .last_modified_time(zip::DateTime::default());
    for (name, content) in parts {
        zip.start_file(name, opts).expect("zip in memory");
        zip.write_all(content.as_bytes()).expect("zip in memory");
    }
    zip.finish().expect("zip in memory").into_inner()
}
