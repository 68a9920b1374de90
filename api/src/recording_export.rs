//! Recording exports streamed from the blob store in constant memory.
//!
//! An export of a range is the first segment's init section followed by every fragment
//! (`moof` + `mdat`) of the range, from consecutive segments with the same init section. Its
//! [`ExportPlan`] is computed from the segments' box headers alone (the `moov` and `moof` boxes
//! are read, every `mdat` skipped), so planning reads kilobytes whatever the size; the bytes are
//! then read from the blob store in chunks of [`CHUNK`] and sent as they come:
//!
//! * a whole export ([`Emitter`] + [`ExportPlan::write`]) reads every segment it uses from its
//!   first byte to its last, checks the segment's recorded SHA-256 on the way and fails (an
//!   [`ExportError::Integrity`]) after a segment that no longer matches — the client sees a short
//!   body, never a complete altered file;
//! * a byte range ([`ExportPlan::write_range`]) seeks into the segments it covers (players ask
//!   for many ranges; they are not re-checked);
//! * a manifest's digests are the same walk with nothing sent ([`ExportPlan::digests`]): SHA-256
//!   and SM3 fed incrementally, byte-identical to hashing the assembled file.
//!
//! [`ZipStream`] writes a ZIP archive of stored (uncompressed) entries as it goes: each entry's
//! CRC-32 and sizes follow it in a data descriptor, ZIP64 records are written when an entry,
//! an offset or the directory passes 4 GiB.
//!
//! Memory: a chunk or two per request and the plan (a few numbers per fragment).

use axum::body::{Body, Bytes};
use sha2::{Digest, Sha256};
use shouhu_media::mp4::recover::layout;
use shouhu_storage::blob::BlobStore;
use shouhu_storage::recordings::Segment;
use shouhu_storage::StorageError;
use sm3::Sm3;
use tokio::sync::mpsc;

/// Bytes read from the blob store at a time.
pub const CHUNK: u64 = 1 << 20;

/// The largest box other than `mdat` read while planning (a `moov` or a `moof`).
const MAX_META_BOX: u64 = 64 << 20;

/// Why an export cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The blob store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A segment no longer matches its recorded digest.
    #[error("segment {seq} of the recording does not match its recorded digest: it was altered or damaged")]
    Integrity {
        /// The segment's position.
        seq: i64,
    },
    /// A segment is not a fragmented MP4 file.
    #[error("segment {seq} is not a fragmented MP4")]
    NotFragmented {
        /// The segment's position.
        seq: i64,
    },
    /// The receiver went away (the client disconnected).
    #[error("the client went away")]
    Closed,
}

/// One contiguous byte range of a segment file that goes into the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the segment file.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// A segment file the export reads, with the pieces it takes from it (in file order).
#[derive(Debug, Clone)]
pub struct Source {
    /// The segment.
    pub segment: Segment,
    /// Its pieces.
    pub pieces: Vec<Piece>,
}

/// The layout of an export: where each of its bytes comes from.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    /// The segment files, in export order.
    pub sources: Vec<Source>,
    /// The segments whose fragments are in the export (the manifest's list).
    pub used: Vec<Segment>,
    /// Export length, bytes.
    pub len: u64,
    /// First decode time of the export on the recording's timeline, 90 kHz.
    pub span_start_90k: i64,
    /// End of its last sample, 90 kHz.
    pub span_end_90k: i64,
}

/// A fragment of a segment file, in real file offsets.
#[derive(Debug, Clone, Copy)]
struct Frag {
    start: u64,
    end: u64,
    start_90k: i64,
    end_90k: i64,
}

/// Reads a blob through a window of [`CHUNK`] bytes.
struct Window<'a> {
    blobs: &'a dyn BlobStore,
    key: &'a str,
    at: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// `n` bytes at `at` (fewer at the end of the blob).
    async fn read(&mut self, at: u64, n: u64) -> Result<Vec<u8>, StorageError> {
        let end = at + n;
        if at < self.at || end > self.at + self.buf.len() as u64 {
            self.buf = self
                .blobs
                .get_range(self.key, at, n.max(CHUNK / 16))
                .await?;
            self.at = at;
        }
        let s = (at - self.at) as usize;
        let e = ((end - self.at) as usize).min(self.buf.len());
        Ok(self.buf.get(s..e).unwrap_or_default().to_vec())
    }
}

/// The init section's length and the fragments of a segment file, from its boxes: every box but
/// `mdat` is read into a skeleton file whose `mdat` boxes are empty, [`layout`] reads that, and
/// its offsets are mapped back to the real file's.
async fn segment_layout(
    blobs: &dyn BlobStore,
    s: &Segment,
) -> Result<Option<(u64, Vec<Frag>)>, ExportError> {
    let size = s.bytes.max(0) as u64;
    let mut w = Window {
        blobs,
        key: &s.blob_key,
        at: 0,
        buf: Vec::new(),
    };
    let mut skeleton = Vec::new();
    // (skeleton offset, real offset) at every top-level box boundary.
    let mut map: Vec<(usize, u64)> = vec![(0, 0)];
    let mut at = 0u64;
    while at + 8 <= size {
        let h = w.read(at, 16).await?;
        if h.len() < 8 {
            break;
        }
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
        let kind = [h[4], h[5], h[6], h[7]];
        let (len, head) = match size32 {
            0 => break,
            1 if h.len() >= 16 => (
                u64::from_be_bytes(h[8..16].try_into().unwrap_or([0; 8])),
                16,
            ),
            1 => break,
            n => (n, 8),
        };
        if len < head || at.saturating_add(len) > size {
            break;
        }
        if &kind == b"mdat" {
            skeleton.extend_from_slice(&[0, 0, 0, 8, b'm', b'd', b'a', b't']);
        } else {
            if len > MAX_META_BOX {
                return Err(ExportError::NotFragmented { seq: s.seq });
            }
            let b = w.read(at, len).await?;
            if (b.len() as u64) < len {
                break;
            }
            skeleton.extend_from_slice(&b);
        }
        at += len;
        map.push((skeleton.len(), at));
    }
    let Some(l) = layout(&skeleton) else {
        return Ok(None);
    };
    let real = |off: usize| {
        map.binary_search_by_key(&off, |&(k, _)| k)
            .ok()
            .map(|i| map[i].1)
    };
    let Some(init_len) = real(l.init_len) else {
        return Ok(None);
    };
    let mut frags = Vec::with_capacity(l.fragments.len());
    for f in &l.fragments {
        let (Some(start), Some(end)) = (real(f.start), real(f.end)) else {
            return Ok(None);
        };
        frags.push(Frag {
            start,
            end,
            start_90k: f.start_90k as i64,
            end_90k: f.end_90k as i64,
        });
    }
    Ok(Some((init_len, frags)))
}

impl ExportPlan {
    /// The plan of the export of `segs` (the recording's segments overlapping the range, in
    /// order) restricted to fragments overlapping `[from_90k, to_90k)`: the same bytes the
    /// export always had. `None` when no fragment is in the range.
    pub async fn new(
        blobs: &dyn BlobStore,
        segs: Vec<Segment>,
        from_90k: i64,
        to_90k: i64,
    ) -> Result<Option<Self>, ExportError> {
        let mut sources: Vec<Source> = Vec::new();
        let mut used = Vec::new();
        let mut init: Option<Vec<u8>> = None;
        let mut len = 0u64;
        let (mut span_start, mut span_end) = (i64::MAX, i64::MIN);
        for s in segs {
            let Some((init_len, frags)) = segment_layout(blobs, &s).await? else {
                return Err(ExportError::NotFragmented { seq: s.seq });
            };
            let this_init = blobs.get_range(&s.blob_key, 0, init_len).await?;
            let mut pieces = Vec::new();
            match &init {
                None => {
                    init = Some(this_init);
                    pieces.push(Piece {
                        offset: 0,
                        len: init_len,
                    });
                }
                Some(i) if *i != this_init => {
                    if used.is_empty() {
                        continue;
                    }
                    break;
                }
                Some(_) => {}
            }
            let mut any = false;
            for f in frags {
                if f.end_90k > from_90k && f.start_90k < to_90k {
                    match pieces.last_mut() {
                        Some(p) if p.offset + p.len == f.start => p.len += f.end - f.start,
                        _ => pieces.push(Piece {
                            offset: f.start,
                            len: f.end - f.start,
                        }),
                    }
                    span_start = span_start.min(f.start_90k);
                    span_end = span_end.max(f.end_90k);
                    any = true;
                }
            }
            if any {
                used.push(s.clone());
            }
            if !pieces.is_empty() {
                len += pieces.iter().map(|p| p.len).sum::<u64>();
                sources.push(Source { segment: s, pieces });
            }
        }
        if used.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            sources,
            used,
            len,
            span_start_90k: span_start,
            span_end_90k: span_end,
        }))
    }

    /// Write the whole export to `out`, reading every source segment whole and checking its
    /// SHA-256 (an altered segment fails after its bytes, before the next).
    pub async fn write(&self, blobs: &dyn BlobStore, out: &mut Emitter) -> Result<(), ExportError> {
        for src in &self.sources {
            let s = &src.segment;
            let size = s.bytes.max(0) as u64;
            let mut sha = Sha256::new();
            let mut at = 0u64;
            while at < size {
                let chunk = blobs
                    .get_range(&s.blob_key, at, CHUNK.min(size - at))
                    .await?;
                if chunk.is_empty() {
                    break;
                }
                sha.update(&chunk);
                let end = at + chunk.len() as u64;
                let chunk = Bytes::from(chunk);
                for p in &src.pieces {
                    let (ps, pe) = (p.offset.max(at), (p.offset + p.len).min(end));
                    if ps < pe {
                        out.data(chunk.slice((ps - at) as usize..(pe - at) as usize))
                            .await?;
                    }
                }
                at = end;
            }
            if hex::encode(sha.finalize()) != s.sha256 {
                tracing::error!(
                    recording.id = %s.recording_id,
                    segment.seq = s.seq,
                    "segment does not match its recorded digest"
                );
                return Err(ExportError::Integrity { seq: s.seq });
            }
        }
        Ok(())
    }

    /// Write the bytes `[start, end]` (inclusive) of the export to `out`, seeking into the
    /// segments that hold them.
    pub async fn write_range(
        &self,
        blobs: &dyn BlobStore,
        start: u64,
        end: u64,
        out: &mut Emitter,
    ) -> Result<(), ExportError> {
        let stop = end.saturating_add(1).min(self.len);
        let mut pos = 0u64; // export offset of the current piece
        for src in &self.sources {
            for p in &src.pieces {
                let (ps, pe) = (pos.max(start), (pos + p.len).min(stop));
                let mut at = ps;
                while at < pe {
                    let n = CHUNK.min(pe - at);
                    let chunk = blobs
                        .get_range(&src.segment.blob_key, p.offset + (at - pos), n)
                        .await?;
                    if (chunk.len() as u64) < n {
                        return Err(ExportError::Storage(StorageError::NotFound(
                            "segment bytes",
                        )));
                    }
                    out.data(Bytes::from(chunk)).await?;
                    at += n;
                }
                pos += p.len;
                if pos >= stop {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The export's (SHA-256, SM3), each segment checked on the way, nothing kept.
    pub async fn digests(
        &self,
        blobs: &dyn BlobStore,
    ) -> Result<([u8; 32], [u8; 32]), ExportError> {
        let mut e = Emitter::hashing();
        self.write(blobs, &mut e).await?;
        let (sha, sm3, _) = e.finish_entry();
        Ok((sha, sm3))
    }
}

/// Where export bytes go: a channel to the response body (or nowhere), through optional
/// hashers (SHA-256, SM3, CRC-32) of the current entry; it counts what it sent.
pub struct Emitter {
    tx: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    hash: Option<(Sha256, Sm3, crc32fast::Hasher)>,
    /// Bytes sent since the start.
    pub sent: u64,
}

impl Emitter {
    /// An emitter into a response body streamed from a bounded channel, and that body.
    pub fn channel() -> (Self, Body) {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        (
            Self {
                tx: Some(tx),
                hash: None,
                sent: 0,
            },
            Body::from_stream(stream),
        )
    }

    /// An emitter that sends nothing and hashes everything.
    pub fn hashing() -> Self {
        Self {
            tx: None,
            hash: Some(Default::default()),
            sent: 0,
        }
    }

    /// Start hashing what follows (an entry's data).
    pub fn start_entry(&mut self) {
        self.hash = Some(Default::default());
    }

    /// Stop hashing: the (SHA-256, SM3, CRC-32) of what was sent since [`Emitter::start_entry`].
    pub fn finish_entry(&mut self) -> ([u8; 32], [u8; 32], u32) {
        let (sha, sm3, crc) = self.hash.take().unwrap_or_default();
        (sha.finalize().into(), sm3.finalize().into(), crc.finalize())
    }

    /// Send bytes, hashed when an entry is open.
    pub async fn data(&mut self, b: Bytes) -> Result<(), ExportError> {
        if let Some((sha, sm3, crc)) = &mut self.hash {
            sha.update(&b);
            sm3.update(&b);
            crc.update(&b);
        }
        self.sent += b.len() as u64;
        match &self.tx {
            Some(tx) => tx.send(Ok(b)).await.map_err(|_| ExportError::Closed),
            None => Ok(()),
        }
    }

    /// End the body with an error (the client sees the transfer cut short).
    pub async fn fail(&mut self, e: &ExportError) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    }
}

/// Run `f` writing into a streamed response body; errors end the body early (and are logged).
pub fn stream_body<F, Fut>(f: F) -> Body
where
    F: FnOnce(Emitter) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Emitter, (Emitter, ExportError)>> + Send + 'static,
{
    let (e, body) = Emitter::channel();
    tokio::spawn(async move {
        if let Err((mut e, err)) = f(e).await {
            if !matches!(err, ExportError::Closed) {
                tracing::warn!(error = %err, "export stream ended early");
                e.fail(&err).await;
            }
        }
    });
    body
}

/// One entry of the central directory.
struct CentralEntry {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
    zip64: bool,
}

/// A ZIP archive of stored entries written into an [`Emitter`] as it goes (see the module
/// doc).
pub struct ZipStream {
    /// Where the bytes go.
    pub out: Emitter,
    entries: Vec<CentralEntry>,
    dos_time: u16,
    dos_date: u16,
    open: Option<(String, u64, bool)>,
}

const U32_MAX: u64 = 0xFFFF_FFFF;

impl ZipStream {
    /// An archive into `out`, its entries dated `at_ms` (Asia/Shanghai local time).
    pub fn new(out: Emitter, at_ms: i64) -> Self {
        use chrono::{Datelike, Timelike};
        let t = chrono::DateTime::from_timestamp_millis(at_ms)
            .unwrap_or_default()
            .with_timezone(&chrono_tz::Asia::Shanghai);
        let dos_time = ((t.hour() << 11) | (t.minute() << 5) | (t.second() / 2)) as u16;
        let dos_date =
            ((((t.year() - 1980).clamp(0, 127) as u32) << 9) | (t.month() << 5) | t.day()) as u16;
        Self {
            out,
            entries: Vec::new(),
            dos_time,
            dos_date,
            open: None,
        }
    }

    async fn raw(&mut self, b: Vec<u8>) -> Result<(), ExportError> {
        let h = self.out.hash.take();
        let r = self.out.data(Bytes::from(b)).await;
        self.out.hash = h;
        r
    }

    /// Start an entry of (about) `size_hint` bytes: its local header. Its data follow through
    /// [`ZipStream::out`]; [`ZipStream::end_entry`] ends it.
    pub async fn start_entry(&mut self, name: &str, size_hint: u64) -> Result<(), ExportError> {
        let zip64 = size_hint >= U32_MAX;
        let offset = self.out.sent;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&(if zip64 { 45u16 } else { 20 }).to_le_bytes());
        h.extend_from_slice(&0x0808u16.to_le_bytes()); // data descriptor, UTF-8 name
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // crc: in the descriptor
        let sizes = if zip64 { U32_MAX as u32 } else { 0 };
        h.extend_from_slice(&sizes.to_le_bytes());
        h.extend_from_slice(&sizes.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if zip64 { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if zip64 {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&[0; 16]);
        }
        self.raw(h).await?;
        self.open = Some((name.to_string(), offset, zip64));
        self.out.start_entry();
        Ok(())
    }

    /// End the open entry (its data descriptor); its (SHA-256, SM3) and size.
    pub async fn end_entry(&mut self) -> Result<([u8; 32], [u8; 32], u64), ExportError> {
        let (name, offset, zip64) = self.open.take().unwrap_or_default();
        let (sha, sm3, crc) = self.out.finish_entry();
        let header = 30 + name.len() as u64 + if zip64 { 20 } else { 0 };
        let size = self.out.sent - offset - header;
        let zip64 = zip64 || size >= U32_MAX;
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            d.extend_from_slice(&size.to_le_bytes());
            d.extend_from_slice(&size.to_le_bytes());
        } else {
            d.extend_from_slice(&(size as u32).to_le_bytes());
            d.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.raw(d).await?;
        self.entries.push(CentralEntry {
            name,
            crc,
            size,
            offset,
            zip64,
        });
        Ok((sha, sm3, size))
    }

    /// A whole entry from bytes; its SHA-256.
    pub async fn entry(&mut self, name: &str, data: Vec<u8>) -> Result<[u8; 32], ExportError> {
        self.start_entry(name, data.len() as u64).await?;
        self.out.data(Bytes::from(data)).await?;
        Ok(self.end_entry().await?.0)
    }

    /// The central directory and its end records; the emitter back.
    pub async fn finish(mut self) -> Result<Emitter, ExportError> {
        let cd_start = self.out.sent;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let big_size = e.zip64 || e.size >= U32_MAX;
            let big_off = e.offset >= U32_MAX;
            let mut extra = Vec::new();
            if big_size {
                extra.extend_from_slice(&e.size.to_le_bytes());
                extra.extend_from_slice(&e.size.to_le_bytes());
            }
            if big_off {
                extra.extend_from_slice(&e.offset.to_le_bytes());
            }
            let mut h = Vec::with_capacity(46 + e.name.len() + extra.len() + 4);
            h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            let version = if big_size || big_off { 45u16 } else { 20 };
            h.extend_from_slice(&(version | (3 << 8)).to_le_bytes()); // made by: Unix
            h.extend_from_slice(&version.to_le_bytes());
            h.extend_from_slice(&0x0808u16.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&self.dos_time.to_le_bytes());
            h.extend_from_slice(&self.dos_date.to_le_bytes());
            h.extend_from_slice(&e.crc.to_le_bytes());
            let s32 = if big_size {
                U32_MAX as u32
            } else {
                e.size as u32
            };
            h.extend_from_slice(&s32.to_le_bytes());
            h.extend_from_slice(&s32.to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            let extra_len = if extra.is_empty() { 0 } else { 4 + extra.len() };
            h.extend_from_slice(&(extra_len as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
            let o32 = if big_off {
                U32_MAX as u32
            } else {
                e.offset as u32
            };
            h.extend_from_slice(&o32.to_le_bytes());
            h.extend_from_slice(e.name.as_bytes());
            if !extra.is_empty() {
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
                h.extend_from_slice(&extra);
            }
            self.raw(h).await?;
        }
        let cd_end = self.out.sent;
        let cd_size = cd_end - cd_start;
        let n = entries.len() as u64;
        let zip64 = n >= 0xFFFF || cd_start >= U32_MAX || cd_size >= U32_MAX;
        let mut t = Vec::new();
        if zip64 {
            t.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            t.extend_from_slice(&44u64.to_le_bytes());
            t.extend_from_slice(&(45u16 | (3 << 8)).to_le_bytes());
            t.extend_from_slice(&45u16.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&n.to_le_bytes());
            t.extend_from_slice(&n.to_le_bytes());
            t.extend_from_slice(&cd_size.to_le_bytes());
            t.extend_from_slice(&cd_start.to_le_bytes());
            t.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&cd_end.to_le_bytes());
            t.extend_from_slice(&1u32.to_le_bytes());
        }
        t.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        let n16 = if zip64 { 0xFFFF } else { n as u16 };
        t.extend_from_slice(&n16.to_le_bytes());
        t.extend_from_slice(&n16.to_le_bytes());
        let c32 = |v: u64| if zip64 { U32_MAX as u32 } else { v as u32 };
        t.extend_from_slice(&c32(cd_size).to_le_bytes());
        t.extend_from_slice(&c32(cd_start).to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        self.raw(t).await?;
        Ok(self.out)
    }
}
