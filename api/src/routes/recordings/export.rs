//! Export with a signed manifest, the manifest alone, the evidence package of an inspection, and
//! the import of a camera's own file.

use super::*;
use crate::recording_export::{stream_body, Emitter, ExportError, ExportPlan, ZipStream};

/// These routes.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_mp4))
        .routes(routes!(manifest))
        .routes(routes!(evidence_package))
}

/// The import route (its own body limit, `recording.max_import_bytes`).
pub(crate) fn import_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import))
}

/// Where an imported file comes from.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The recorder that filmed it.
    pub device_id: String,
    /// Its channel (default: the recorder's first catalog channel, else `1`).
    pub channel_id: Option<String>,
    /// When filming began, UTC ms. Default: the file's own creation time (`mvhd`), which
    /// cameras often write in local time — give it when known.
    pub started_at: Option<i64>,
    /// The file's name on the camera (kept in the audit row).
    pub file_name: Option<String>,
}

/// Import a camera's MP4 file (as a docking station delivers it; the body is the file): cut
/// into segments like a live recording, stored, indexed with the same digests and chain and
/// signed, with the officer the recorder was bound to at that time. The caller's permission
/// and the recorder's scope are checked before the body is read; the body is streamed to a
/// spool file under the data directory (`recording.max_import_bytes` enforced as it arrives:
/// 413; the file is removed afterwards whatever happens). The same file twice is refused (409
/// `duplicate` with `recording_id`); a file that is not a readable MP4 with H.264 or H.265 video
/// is refused (422) with the reason, and nothing is kept. Audited (`recording.import`).
#[utoipa::path(post, path = "/recordings/import", tag = "recordings", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "video/mp4"),
    responses((status = 200, body = Recording), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Recording>> {
    caller.require(Perm::RecordingReview)?;
    let recorder = match state.db.recorders().get(&caller.scope, &q.device_id).await {
        Ok(r) => r,
        // Another unit's recorder (named in the query, which the central check cannot see):
        // the same 404 as a missing one, audited as denied.
        Err(shouhu_storage::StorageError::NotFound(_))
            if state
                .db
                .row_exists_by("recorders", "device_id", &q.device_id)
                .await? =>
        {
            return Err(ApiError::out_of_scope("recorder", &q.device_id));
        }
        Err(e) => return Err(e.into()),
    };
    let max = state.cfg.recording.max_import_bytes as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let spool = Spool::new(&state.cfg.server.data_dir.join("spool").join("imports")).await?;
    let sha = spool.fill(body, max).await?;
    let note = format!("sha256:{}", hex::encode(sha));
    if let Some(existing) = state.db.recordings().by_note(&note).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate",
            "this file was imported already",
        )
        .with("recording_id", serde_json::json!(existing)));
    }
    // The recorder's import reads the file as one slice (the workspace forbids the unsafe code
    // a memory map needs): read once from the spool, after the checks above.
    let file = tokio::fs::read(&spool.path)
        .await
        .map_err(ApiError::internal)?;
    let created = shouhu_media::mp4::demux::read(&file)
        .map_err(|e| crate::routes::auth::field_error("file", &e.to_string()))?
        .created_ms;
    let started = q.started_at.or(created).ok_or_else(|| {
        crate::routes::auth::field_error(
            "started_at",
            "the file does not say when it was filmed: give started_at",
        )
    })?;
    // A camera that never reported a catalog (files from a docking station): the camera itself.
    let channel = channel_or_first(&state, &q.device_id, q.channel_id, Some(&q.device_id)).await?;
    let officer = officer_at(&state, &q.device_id, started).await?;
    let audit = caller
        .audit("recording.import", state.now())
        .details(serde_json::json!({"file_name": q.file_name}));
    let r = state
        .recorder
        .import(
            &shouhu_media::recorder::Import {
                device_id: q.device_id.clone(),
                channel_id: channel,
                officer_id: officer,
                org_unit_id: recorder.org_unit_id.clone(),
                started_at_ms: started,
                source: "upload".into(),
                note,
            },
            &file,
            &audit,
        )
        .await
        .map_err(|e| match e {
            shouhu_media::recorder::ImportError::Storage(m) => ApiError::internal(m),
            other => crate::routes::auth::field_error("file", &other.to_string()),
        })?;
    drop(file);
    drop(spool);
    let r = state.db.recordings().get(&caller.scope, &r.id).await?;
    Ok(Json(r))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the file is larger than recording.max_import_bytes ({max} bytes)"),
    )
}

/// An uploaded file spooled to disk; removed when dropped (the handler ended, failed, or the
/// client went away).
struct Spool {
    path: std::path::PathBuf,
}

impl Spool {
    async fn new(dir: &std::path::Path) -> ApiResult<Self> {
        shouhu_storage::private_fs::create_dir_all_async(dir)
            .await
            .map_err(ApiError::internal)?;
        Ok(Self {
            path: dir.join(format!("{}.part", shouhu_storage::new_id())),
        })
    }

    /// Write the body to the spool file as it arrives, at most `max` bytes (413 past it); the
    /// SHA-256 of what was written.
    async fn fill(&self, body: Body, max: u64) -> ApiResult<[u8; 32]> {
        use futures::StreamExt;
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        let mut f = shouhu_storage::private_fs::create_file_async(&self.path)
            .await
            .map_err(ApiError::internal)?;
        let mut sha = sha2::Sha256::new();
        let mut n = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
            n += chunk.len() as u64;
            if n > max {
                return Err(too_large(max));
            }
            sha.update(&chunk);
            f.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        f.flush().await.map_err(ApiError::internal)?;
        Ok(sha.finalize().into())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "spool file not removed")
            }
        }
    }
}

/// The plan of the export of a range (see [`crate::recording_export`]): the first segment's
/// init section and every fragment overlapping the range, from consecutive segments with the
/// same init section (a change of resolution ends an export: export the rest separately). Its
/// span, UTC ms.
async fn plan_export(
    state: &AppState,
    r: &Recording,
    q: &RangeQuery,
) -> ApiResult<(ExportPlan, i64, i64)> {
    let (segs, from, to) = segments_of(state, r, q).await?;
    let plan = ExportPlan::new(
        &*state.blobs,
        segs,
        from.unwrap_or(0),
        to.unwrap_or(i64::MAX),
    )
    .await
    .map_err(export_error)?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no footage of this recording in that range",
        )
    })?;
    let ms = |t: i64| r.started_at_ms + t.div_euclid(90);
    let (from_ms, to_ms) = (ms(plan.span_start_90k), ms(plan.span_end_90k));
    Ok((plan, from_ms, to_ms))
}

fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Integrity { .. } => {
            ApiError::new(StatusCode::CONFLICT, "integrity", e.to_string())
        }
        ExportError::Storage(s) => s.into(),
        other => ApiError::internal(other.to_string()),
    }
}

/// The signed manifest of an export with digests `(sha, sm3)`.
#[allow(clippy::too_many_arguments)]
fn manifest_of(
    state: &AppState,
    r: &Recording,
    (sha, sm3): ([u8; 32], [u8; 32]),
    len: u64,
    used: &[Segment],
    from_ms: i64,
    to_ms: i64,
    chain_start: String,
) -> Manifest {
    Manifest {
        format: "shouhu-manifest-v1".into(),
        recording_id: r.id.clone(),
        from_ms,
        to_ms,
        export_sha256: hex::encode(sha),
        export_sm3: hex::encode(sm3),
        export_bytes: len,
        chain_start,
        segments: used.iter().map(Segment::chained).collect(),
        head: r.head_signature.as_ref().map(|sig| SignedHead {
            segments: r.segment_count as u32,
            head: r.chain_link.clone(),
            signature: sig.clone(),
        }),
        incomplete: r.incomplete,
        gaps: r.gaps.clone(),
        public_key: String::new(),
        signature: String::new(),
    }
    .sign(&state.signer)
}

async fn chain_start(state: &AppState, r: &Recording, first: &Segment) -> ApiResult<String> {
    Ok(if first.seq == 0 {
        hex::encode(genesis(&r.id))
    } else {
        state
            .db
            .recordings()
            .segment(&r.id, first.seq - 1)
            .await?
            .link
    })
}

/// Parse `Range: bytes=a-b` against a length.
fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let spec = v.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (a, b) => (
            a.parse().map_err(|_| ())?,
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1)),
        ),
    };
    if start > end || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// MP4 export of a range as one file, streamed from the segments (`Range` requests supported,
/// served from the segments they cover); its manifest is at `/recordings/{id}/manifest` with
/// the same range. A whole download checks every segment's digest on the way and is cut short
/// after one that no longer matches. Audited (`recording.export`; not for follow-up range
/// requests).
#[utoipa::path(get, path = "/recordings/{id}/export.mp4", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, content_type = "video/mp4"), (status = 206, content_type = "video/mp4"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 416)))]
async fn export_mp4(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (plan, from_ms, to_ms) = plan_export(&state, &r, &q).await?;
    let len = plan.len;
    let name = format!(
        "recording-{}-{}.mp4",
        r.device_id,
        chrono::DateTime::from_timestamp_millis(from_ms)
            .unwrap_or_default()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .format("%Y%m%d-%H%M%S")
    );
    let range = match byte_range(&headers, len) {
        Ok(r) => r,
        Err(()) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response())
        }
    };
    if range.is_none_or(|(s, _)| s == 0) {
        let audit = caller
            .audit("recording.export", state.now())
            .target("recording", &id)
            .details(
                serde_json::json!({"from": from_ms, "to": to_ms, "bytes": len,
                "segments": plan.used.iter().map(|s| s.seq).collect::<Vec<_>>()}),
            );
        state.db.audit().record(&audit).await?;
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    let blobs = state.blobs.clone();
    Ok(match range {
        None => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let body = stream_body(move |mut e| async move {
                match plan.write(&*blobs, &mut e).await {
                    Ok(()) => Ok(e),
                    Err(err) => Err((e, err)),
                }
            });
            (h, body).into_response()
        }
        Some((s, end)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{end}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - s + 1));
            let body = stream_body(move |mut e| async move {
                match plan.write_range(&*blobs, s, end, &mut e).await {
                    Ok(()) => Ok(e),
                    Err(err) => Err((e, err)),
                }
            });
            (StatusCode::PARTIAL_CONTENT, h, body).into_response()
        }
    })
}

/// The signed manifest of the export of the same range: the export's digests, the digests and
/// chain links of the segments it came from, the recording's signed chain head, and the
/// server's signature. Computed from the segments as they are read (the export is never held
/// whole); a segment that no longer matches its digest answers 409 `integrity`.
/// `shouhu verify FILE MANIFEST` checks it offline.
#[utoipa::path(get, path = "/recordings/{id}/manifest", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (plan, from_ms, to_ms) = plan_export(&state, &r, &q).await?;
    let digests = plan.digests(&*state.blobs).await.map_err(export_error)?;
    let start = chain_start(&state, &r, &plan.used[0]).await?;
    let m = manifest_of(
        &state, &r, digests, plan.len, &plan.used, from_ms, to_ms, start,
    );
    let body = serde_json::to_vec_pretty(&m).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"manifest.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The evidence package of an inspection: a ZIP (stored entries, ZIP64 past 4 GiB) with every
/// linked recording exported whole, each with its signed manifest, the inspection's summary
/// (`inspection.json`), the server's public key and `SHA256SUMS`. Streamed as it is written:
/// each recording is read once, its manifest's digests taken on the way; a segment that no
/// longer matches its digest cuts the package short. Audited (`recording.export` per
/// recording and `inspection.evidence_package`, when the package starts).
#[utoipa::path(get, path = "/inspections/{id}/evidence.zip", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/zip"), (status = 404, body = ErrorBody)))]
async fn evidence_package(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let inspection = state.db.inspections().get(&caller.scope, &id).await?;
    let f = RecordingFilter {
        inspection_id: Some(id.clone()),
        ..Default::default()
    };
    let recs = state
        .db
        .recordings()
        .search(&caller.scope, &f, PageRequest::new(Some(1), Some(500)))
        .await?;
    let now = state.now();
    let summary = serde_json::json!({
        "inspection": inspection,
        "recordings": recs.items.iter().map(|r| serde_json::json!({
            "id": r.id, "device_id": r.device_id, "officer_id": r.officer_id, "officer_name": r.officer_name,
            "started_at_ms": r.started_at_ms, "ended_at_ms": r.ended_at_ms, "segments": r.segment_count,
        })).collect::<Vec<_>>(),
        "generated_at_ms": now,
        "generated_by": caller.account.username,
    });
    let summary = serde_json::to_vec_pretty(&summary).map_err(ApiError::internal)?;
    let none = RangeQuery {
        from: None,
        to: None,
        audio: None,
        media_token: None,
    };
    // Plans first (box headers only): what cannot be exported fails before the first byte.
    let mut parts = Vec::new();
    for r in recs.items.iter().filter(|r| r.status == "closed") {
        let (plan, from_ms, to_ms) = plan_export(&state, r, &none).await?;
        let start = chain_start(&state, r, &plan.used[0]).await?;
        parts.push((r.clone(), plan, from_ms, to_ms, start));
    }
    for (r, plan, ..) in &parts {
        let audit = caller
            .audit("recording.export", now)
            .target("recording", &r.id)
            .details(serde_json::json!({"inspection_id": id, "package": true, "bytes": plan.len}));
        state.db.audit().record(&audit).await?;
    }
    let audit = caller
        .audit("inspection.evidence_package", now)
        .target("inspection", &id)
        .details(serde_json::json!({"recordings": recs.items.len()}));
    state.db.audit().record(&audit).await?;
    let code = inspection.code.clone();
    let public_key = format!("{}\n", state.signer.public_key_hex());
    let st = state.clone();
    let body = stream_body(move |e| async move {
        let mut zip = ZipStream::new(e, now);
        let result = async {
            let mut sums = String::new();
            let mut sum = |sha: [u8; 32], name: &str| {
                sums.push_str(&format!("{}  {name}\n", hex::encode(sha)));
            };
            sum(
                zip.entry("inspection.json", summary).await?,
                "inspection.json",
            );
            for (r, plan, from_ms, to_ms, start) in parts {
                let name = format!("{}/recording.mp4", r.id);
                zip.start_entry(&name, plan.len).await?;
                plan.write(&*st.blobs, &mut zip.out).await?;
                let (sha, sm3, len) = zip.end_entry().await?;
                sum(sha, &name);
                let m = manifest_of(&st, &r, (sha, sm3), len, &plan.used, from_ms, to_ms, start);
                let json = serde_json::to_vec_pretty(&m).map_err(|e| {
                    ExportError::Storage(shouhu_storage::StorageError::Blob(std::io::Error::other(
                        e,
                    )))
                })?;
                let name = format!("{}/manifest.json", r.id);
                sum(zip.entry(&name, json).await?, &name);
            }
            sum(
                zip.entry("public_key.txt", public_key.into_bytes()).await?,
                "public_key.txt",
            );
            zip.start_entry("SHA256SUMS", sums.len() as u64).await?;
            zip.out.data(sums.into_bytes().into()).await?;
            zip.end_entry().await?;
            Ok::<(), ExportError>(())
        }
        .await;
        match result {
            Ok(()) => zip.finish().await.map_err(|err| (Emitter::hashing(), err)),
            Err(err) => Err((zip.out, err)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{code}.zip\""),
            ),
        ],
        body,
    )
        .into_response())
}
