//! A4 PDF of an enforcement document with the Chinese font embedded as a subset.
//!
//! The font (a TrueType face, by default WenQuanYi Micro Hei from Debian's `fonts-wqy-microhei`)
//! is cut down to the glyphs the document uses (`subsetter`) and embedded as a CIDFontType2 with
//! Identity-H encoding and a ToUnicode CMap, so the text prints the same everywhere and can be
//! searched and copied (and extracted by `pdftotext`). Lines wrap by measured advance widths;
//! CJK text may break between any two characters, Latin words stay whole where they fit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use super::{Block, Document};

/// A4 in points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 72.0;
const MARGIN_TOP: f32 = 72.0;
const MARGIN_BOTTOM: f32 = 72.0;

/// A loaded font face: the file and which face of a collection.
#[derive(Debug)]
pub struct Font {
    data: Vec<u8>,
    index: u32,
    units_per_em: f32,
    ascender: f32,
    descender: f32,
    bbox: [f32; 4],
    name: String,
}

impl Font {
    /// Parse face `index` of a TrueType/OpenType file (or collection).
    pub fn load(data: Vec<u8>, index: u32) -> Result<Self, String> {
        let face =
            ttf_parser::Face::parse(&data, index).map_err(|e| format!("not a usable font: {e}"))?;
        let units_per_em = face.units_per_em() as f32;
        let r = face.global_bounding_box();
        let name = face
            .names()
            .into_iter()
            .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
            .and_then(|n| n.to_string())
            .unwrap_or_else(|| "ShouhuCJK".to_string())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let (ascender, descender) = (face.ascender() as f32, face.descender() as f32);
        Ok(Self {
            units_per_em,
            ascender,
            descender,
            bbox: [
                r.x_min as f32,
                r.y_min as f32,
                r.x_max as f32,
                r.y_max as f32,
            ],
            name,
            data,
            index,
        })
    }

    fn face(&self) -> ttf_parser::Face<'_> {
        ttf_parser::Face::parse(&self.data, self.index).expect("parsed at load")
    }

    /// Scale font units to 1/1000 em (PDF glyph space).
    fn per_mille(&self, v: f32) -> f32 {
        v * 1000.0 / self.units_per_em
    }
}

/// Glyphs used so far, remapped into the subset; widths in 1/1000 em.
struct Shaper<'f> {
    font: &'f Font,
    face: ttf_parser::Face<'f>,
    remap: subsetter::GlyphRemapper,
    /// new gid → (unicode text, width)
    used: BTreeMap<u16, (String, f32)>,
}

impl<'f> Shaper<'f> {
    fn new(font: &'f Font) -> Self {
        Self {
            font,
            face: font.face(),
            remap: subsetter::GlyphRemapper::new(),
            used: BTreeMap::new(),
        }
    }

    /// (original gid, width in 1/1000 em) of a character; `.notdef` when the font lacks it.
    fn glyph(&self, c: char) -> (u16, f32) {
        let gid = self.face.glyph_index(c).map(|g| g.0).unwrap_or(0);
        let adv = self
            .face
            .glyph_hor_advance(ttf_parser::GlyphId(gid))
            .unwrap_or(0) as f32;
        (gid, self.font.per_mille(adv))
    }

    fn width(&self, s: &str, size: f32) -> f32 {
        s.chars().map(|c| self.glyph(c).1).sum::<f32>() * size / 1000.0
    }

    /// The hex string of `s` in subset gids (Identity-H: two bytes per glyph).
    fn encode(&mut self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() * 4 + 2);
        out.push('<');
        for c in s.chars() {
            let (gid, w) = self.glyph(c);
            let new = self.remap.remap(gid);
            self.used.entry(new).or_insert_with(|| (c.to_string(), w));
            let _ = write!(out, "{new:04X}");
        }
        out.push('>');
        out
    }
}

/// Break `text` into lines of at most `width` points at `size`.
fn wrap(sh: &Shaper<'_>, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut w = 0.0;
    // Tokens: a run of ASCII letters/digits stays whole; anything else is one token per char.
    let mut tokens: Vec<String> = Vec::new();
    for c in text.chars() {
        let ascii_word = c.is_ascii_alphanumeric();
        match tokens.last_mut() {
            Some(t) if ascii_word && t.chars().all(|x| x.is_ascii_alphanumeric()) => t.push(c),
            _ => tokens.push(c.to_string()),
        }
    }
    for t in tokens {
        let tw = sh.width(&t, size);
        if w + tw > width && !line.is_empty() {
            // Closing punctuation never starts a line.
            let hang = t.chars().all(|c| "，。、；：！？）》」』".contains(c));
            if !hang {
                lines.push(std::mem::take(&mut line));
                w = 0.0;
                if t == " " {
                    continue;
                }
            }
        }
        if tw > width {
            // A word longer than the line: break it by characters.
            for c in t.chars() {
                let cw = sh.width(&c.to_string(), size);
                if w + cw > width && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    w = 0.0;
                }
                line.push(c);
                w += cw;
            }
        } else {
            line.push_str(&t);
            w += tw;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// One positioned text run.
struct Run {
    page: usize,
    x: f32,
    y: f32,
    size: f32,
    text: String,
}

/// Lay the document out on pages: runs of text, and the page count.
fn layout(sh: &Shaper<'_>, doc: &Document) -> (Vec<Run>, usize) {
    let mut runs = Vec::new();
    let mut page = 0;
    let mut y = PAGE_H - MARGIN_TOP;
    let text_w = PAGE_W - 2.0 * MARGIN_X;
    let put = |runs: &mut Vec<Run>,
               y: &mut f32,
               page: &mut usize,
               x: f32,
               size: f32,
               text: String,
               lead: f32| {
        if *y - lead < MARGIN_BOTTOM {
            *page += 1;
            *y = PAGE_H - MARGIN_TOP;
        }
        *y -= lead;
        runs.push(Run {
            page: *page,
            x,
            y: *y,
            size,
            text,
        });
    };
    // Issuer and title centred, number right-aligned.
    for (text, size, lead) in [
        (doc.issuer.as_str(), 14.0, 20.0),
        (doc.title.as_str(), 20.0, 32.0),
    ] {
        let x = (PAGE_W - sh.width(text, size)) / 2.0;
        put(
            &mut runs,
            &mut y,
            &mut page,
            x.max(MARGIN_X),
            size,
            text.to_string(),
            lead,
        );
    }
    let num = doc.number.clone();
    let x = PAGE_W - MARGIN_X - sh.width(&num, 11.0);
    put(&mut runs, &mut y, &mut page, x, 11.0, num, 22.0);
    y -= 8.0;
    let body = 12.0;
    let lead = 21.0;
    for b in &doc.blocks {
        match b {
            Block::Field(label, value) => {
                let head = format!("{label}：");
                let hw = sh.width(&head, body);
                let lines = wrap(sh, value, body, text_w - hw);
                for (i, l) in lines.into_iter().enumerate() {
                    if i == 0 {
                        put(
                            &mut runs,
                            &mut y,
                            &mut page,
                            MARGIN_X,
                            body,
                            format!("{head}{l}"),
                            lead,
                        );
                    } else {
                        put(&mut runs, &mut y, &mut page, MARGIN_X + hw, body, l, lead);
                    }
                }
            }
            Block::Paragraph(text) => {
                for para in text.split('\n') {
                    // First-line indent of two characters, as Chinese official documents have.
                    let indented = format!("\u{3000}\u{3000}{}", para.trim());
                    for l in wrap(sh, &indented, body, text_w) {
                        put(&mut runs, &mut y, &mut page, MARGIN_X, body, l, lead);
                    }
                }
            }
            Block::Gap => y -= lead / 2.0,
        }
    }
    // Signature block, right-aligned.
    y -= lead;
    for l in [doc.issuer.clone(), doc.date.clone()] {
        let x = PAGE_W - MARGIN_X - sh.width(&l, body) - 24.0;
        put(&mut runs, &mut y, &mut page, x, body, l, lead);
    }
    (runs, page + 1)
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write to memory");
    e.finish().expect("write to memory")
}

/// A PDF string literal of printable ASCII / UTF-16BE text (for the Info dictionary).
fn text_string(s: &str) -> String {
    let mut out = String::from("<FEFF");
    for u in s.encode_utf16() {
        let _ = write!(out, "{u:04X}");
    }
    out.push('>');
    out
}

/// Render `doc` with `font`. `created` is `D:YYYYMMDDHHmmSS+08'00'`.
pub fn render(doc: &Document, font: &Font, created: &str) -> Result<Vec<u8>, String> {
    let mut sh = Shaper::new(font);
    let (runs, pages) = layout(&sh, doc);
    // Content streams (encoding the text fills the subset).
    let mut contents = vec![String::new(); pages];
    for r in &runs {
        let hex = sh.encode(&r.text);
        let _ = writeln!(
            contents[r.page],
            "BT /F1 {:.1} Tf {:.2} {:.2} Td {hex} Tj ET",
            r.size, r.x, r.y
        );
    }
    for (i, c) in contents.iter_mut().enumerate() {
        let label = format!("第 {} 页 共 {} 页", i + 1, pages);
        let x = (PAGE_W - sh.width(&label, 9.0)) / 2.0;
        let hex = sh.encode(&label);
        let _ = writeln!(c, "BT /F1 9 Tf {x:.2} 40 Td {hex} Tj ET");
    }
    let subset = subsetter::subset(&font.data, font.index, &sh.remap)
        .map_err(|e| format!("font subsetting failed: {e:?}"))?;

    // Objects: 1 catalog, 2 pages, 3 Type0, 4 CIDFont, 5 descriptor, 6 font file, 7 ToUnicode,
    // 8 info, then per page: page, content.
    let mut objs: Vec<Vec<u8>> = Vec::new();
    let page_ids: Vec<usize> = (0..pages).map(|i| 9 + 2 * i).collect();
    objs.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objs.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            page_ids
                .iter()
                .map(|i| format!("{i} 0 R"))
                .collect::<Vec<_>>()
                .join(" ")
        )
        .into_bytes(),
    );
    let base = format!("SHSUBS+{}", font.name);
    objs.push(
        format!("<< /Type /Font /Subtype /Type0 /BaseFont /{base} /Encoding /Identity-H /DescendantFonts [4 0 R] /ToUnicode 7 0 R >>")
            .into_bytes(),
    );
    let mut w = String::new();
    for (gid, (_, width)) in &sh.used {
        let _ = write!(w, "{gid} [{width:.0}] ");
    }
    objs.push(
        format!(
            "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{base} /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
             /FontDescriptor 5 0 R /DW 1000 /W [{w}] /CIDToGIDMap /Identity >>"
        )
        .into_bytes(),
    );
    let [x0, y0, x1, y1] = font.bbox.map(|v| font.per_mille(v));
    objs.push(
        format!(
            "<< /Type /FontDescriptor /FontName /{base} /Flags 4 /FontBBox [{x0:.0} {y0:.0} {x1:.0} {y1:.0}] /ItalicAngle 0 \
             /Ascent {:.0} /Descent {:.0} /CapHeight {:.0} /StemV 80 /FontFile2 6 0 R >>",
            font.per_mille(font.ascender),
            font.per_mille(font.descender),
            font.per_mille(font.ascender)
        )
        .into_bytes(),
    );
    let packed = deflate(&subset);
    let mut ff = format!(
        "<< /Length {} /Length1 {} /Filter /FlateDecode >>\nstream\n",
        packed.len(),
        subset.len()
    )
    .into_bytes();
    ff.extend_from_slice(&packed);
    ff.extend_from_slice(b"\nendstream");
    objs.push(ff);
    let mut cmap = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
         /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    let entries: Vec<_> = sh.used.iter().collect();
    for chunk in entries.chunks(100) {
        let _ = writeln!(cmap, "{} beginbfchar", chunk.len());
        for (gid, (text, _)) in chunk {
            let mut u = String::new();
            for unit in text.encode_utf16() {
                let _ = write!(u, "{unit:04X}");
            }
            let _ = writeln!(cmap, "<{gid:04X}> <{u}>");
        }
        cmap.push_str("endbfchar\n");
    }
    cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    let mut cm = format!("<< /Length {} >>\nstream\n", cmap.len()).into_bytes();
    cm.extend_from_slice(cmap.as_bytes());
    cm.extend_from_slice(b"\nendstream");
    objs.push(cm);
    objs.push(
        format!(
            "<< /Title {} /Subject {} /Producer (Shouhu) /CreationDate ({created}) >>",
            text_string(&doc.title),
            text_string(&doc.number)
        )
        .into_bytes(),
    );
    for (i, c) in contents.iter().enumerate() {
        objs.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                page_ids[i] + 1
            )
            .into_bytes(),
        );
        let packed = deflate(c.as_bytes());
        let mut s = format!(
            "<< /Length {} /Filter /FlateDecode >>\nstream\n",
            packed.len()
        )
        .into_bytes();
        s.extend_from_slice(&packed);
        s.extend_from_slice(b"\nendstream");
        objs.push(s);
    }

    let mut out: Vec<u8> = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objs.len());
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let mut x = format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1);
    for off in offsets {
        let _ = writeln!(x, "{off:010} 00000 n ");
    }
    let _ = write!(
        x,
        "trailer\n<< /Size {} /Root 1 0 R /Info 8 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objs.len() + 1
    );
    out.extend_from_slice(x.as_bytes());
    Ok(out)
}
