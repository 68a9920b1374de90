//! Export with a signed manifest, the manifest alone, the evidence package of an inspection, and
//! the import of a camera's own file.

use super::*;

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
/// signed, with the officer the recorder was bound to at that time. The same file twice is
/// refused (409 `duplicate` with `recording_id`); a file that is not a readable MP4 with H.264
/// or H.265 video is refused (422) with the reason, and nothing is kept. Audited
/// (`recording.import`).
#[utoipa::path(post, path = "/recordings/import", tag = "recordings", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "video/mp4"),
    responses((status = 200, body = Recording), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Recording>> {
    caller.require(Perm::RecordingReview)?;
    let recorder = state
        .db
        .recorders()
        .get(&caller.scope, &q.device_id)
        .await?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let note = format!("sha256:{sha}");
    if let Some(existing) = state.db.recordings().by_note(&note).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate",
            "this file was imported already",
        )
        .with("recording_id", serde_json::json!(existing)));
    }
    let file = body.to_vec();
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
    let r = state.db.recordings().get(&caller.scope, &r.id).await?;
    Ok(Json(r))
}

/// The export of a range: the first segment's init section and every fragment overlapping the
/// range, from consecutive segments with the same init section (a change of resolution ends
/// an export: export the rest separately). Returns the bytes, the segments used, the span.
async fn build_export(
    state: &AppState,
    r: &Recording,
    q: &RangeQuery,
) -> ApiResult<(Vec<u8>, Vec<Segment>, i64, i64)> {
    let (segs, from, to) = segments_of(state, r, q).await?;
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(i64::MAX));
    let mut out: Vec<u8> = Vec::new();
    let mut used = Vec::new();
    let mut init: Option<Vec<u8>> = None;
    let (mut span_start, mut span_end) = (i64::MAX, i64::MIN);
    for s in segs {
        let data = state.blobs.get(&s.blob_key).await?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
        if sha != s.sha256 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "integrity",
                format!(
                    "segment {} of the recording does not match its recorded digest: it was altered or damaged",
                    s.seq
                ),
            ));
        }
        let Some(Layout {
            init_len,
            fragments,
            ..
        }) = layout(&data)
        else {
            return Err(ApiError::internal(format!(
                "segment {} is not a fragmented MP4",
                s.seq
            )));
        };
        let this_init = &data[..init_len];
        match &init {
            None => {
                init = Some(this_init.to_vec());
                out.extend_from_slice(this_init);
            }
            Some(i) if i.as_slice() != this_init => {
                if used.is_empty() {
                    continue;
                }
                break;
            }
            Some(_) => {}
        }
        let mut any = false;
        for f in fragments {
            let (fs, fe) = (f.start_90k as i64, f.end_90k as i64);
            if fe > from && fs < to {
                out.extend_from_slice(&data[f.start..f.end]);
                span_start = span_start.min(fs);
                span_end = span_end.max(fe);
                any = true;
            }
        }
        if any {
            used.push(s);
        }
    }
    if used.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no footage of this recording in that range",
        ));
    }
    let ms = |t: i64| r.started_at_ms + t.div_euclid(90);
    Ok((out, used, ms(span_start), ms(span_end)))
}

/// The signed manifest of an export.
fn manifest_of(
    state: &AppState,
    r: &Recording,
    file: &[u8],
    used: &[Segment],
    from_ms: i64,
    to_ms: i64,
    chain_start: String,
) -> Manifest {
    let (sha, sm3) = shouhu_storage::evidence::digests(file);
    Manifest {
        format: "shouhu-manifest-v1".into(),
        recording_id: r.id.clone(),
        from_ms,
        to_ms,
        export_sha256: hex::encode(sha),
        export_sm3: hex::encode(sm3),
        export_bytes: file.len() as u64,
        chain_start,
        segments: used.iter().map(Segment::chained).collect(),
        head: r.head_signature.as_ref().map(|sig| SignedHead {
            segments: r.segment_count as u32,
            head: r.chain_link.clone(),
            signature: sig.clone(),
        }),
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
fn byte_range(headers: &HeaderMap, len: usize) -> Result<Option<(usize, usize)>, ()> {
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
            let n: usize = n.parse().map_err(|_| ())?;
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (a, b) => (
            a.parse().map_err(|_| ())?,
            b.parse::<usize>()
                .map_err(|_| ())?
                .min(len.saturating_sub(1)),
        ),
    };
    if start > end || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// MP4 export of a range as one file (`Range` requests supported); its manifest is at
/// `/recordings/{id}/manifest` with the same range. Audited (`recording.export`; not for
/// follow-up range requests).
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
    let (file, used, from_ms, to_ms) = build_export(&state, &r, &q).await?;
    let len = file.len();
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
                "segments": used.iter().map(|s| s.seq).collect::<Vec<_>>()}),
            );
        state.db.audit().record(&audit).await?;
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(match range {
        None => (h, Body::from(file)).into_response(),
        Some((s, e)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (
                StatusCode::PARTIAL_CONTENT,
                h,
                Body::from(file[s..=e].to_vec()),
            )
                .into_response()
        }
    })
}

/// The signed manifest of the export of the same range: the export's digests, the digests and
/// chain links of the segments it came from, the recording's signed chain head, and the
/// server's signature. `shouhu verify FILE MANIFEST` checks it offline.
#[utoipa::path(get, path = "/recordings/{id}/manifest", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, body = serde_json::Value), (status = 404, body = ErrorBody)))]
async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (file, used, from_ms, to_ms) = build_export(&state, &r, &q).await?;
    let start = chain_start(&state, &r, &used[0]).await?;
    let m = manifest_of(&state, &r, &file, &used, from_ms, to_ms, start);
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

/// The evidence package of an inspection: a ZIP with every linked recording exported whole,
/// each with its signed manifest, the inspection's summary (`inspection.json`), the server's
/// public key and `SHA256SUMS`. Audited (`recording.export` per recording and
/// `inspection.evidence_package`).
#[utoipa::path(get, path = "/inspections/{id}/evidence.zip", tag = "recordings", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/zip"), (status = 404, body = ErrorBody)))]
async fn evidence_package(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    use std::io::Write;
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
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut sums = String::new();
    let mut add = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: &[u8]| -> ApiResult<()> {
        sums.push_str(&format!(
            "{}  {name}\n",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        ));
        zip.start_file(name, opts)
            .and_then(|_| zip.write_all(bytes).map_err(Into::into))
            .map_err(ApiError::internal)
    };
    let summary = serde_json::json!({
        "inspection": inspection,
        "recordings": recs.items.iter().map(|r| serde_json::json!({
            "id": r.id, "device_id": r.device_id, "officer_id": r.officer_id, "officer_name": r.officer_name,
            "started_at_ms": r.started_at_ms, "ended_at_ms": r.ended_at_ms, "segments": r.segment_count,
        })).collect::<Vec<_>>(),
        "generated_at_ms": state.now(),
        "generated_by": caller.account.username,
    });
    add(
        &mut zip,
        "inspection.json",
        &serde_json::to_vec_pretty(&summary).map_err(ApiError::internal)?,
    )?;
    let none = RangeQuery {
        from: None,
        to: None,
        audio: None,
        media_token: None,
    };
    for r in &recs.items {
        if r.status != "closed" {
            continue;
        }
        let (file, used, from_ms, to_ms) = build_export(&state, r, &none).await?;
        let start = chain_start(&state, r, &used[0]).await?;
        let m = manifest_of(&state, r, &file, &used, from_ms, to_ms, start);
        add(&mut zip, &format!("{}/recording.mp4", r.id), &file)?;
        add(
            &mut zip,
            &format!("{}/manifest.json", r.id),
            &serde_json::to_vec_pretty(&m).map_err(ApiError::internal)?,
        )?;
        let audit = caller
            .audit("recording.export", state.now())
            .target("recording", &r.id)
            .details(
                serde_json::json!({"inspection_id": id, "package": true, "bytes": file.len()}),
            );
        state.db.audit().record(&audit).await?;
    }
    add(
        &mut zip,
        "public_key.txt",
        format!("{}\n", state.signer.public_key_hex()).as_bytes(),
    )?;
    zip.start_file("SHA256SUMS", opts)
        .and_then(|_| zip.write_all(sums.as_bytes()).map_err(Into::into))
        .map_err(ApiError::internal)?;
    let bytes = zip.finish().map_err(ApiError::internal)?.into_inner();
    let audit = caller
        .audit("inspection.evidence_package", state.now())
        .target("inspection", &id)
        .details(serde_json::json!({"recordings": recs.items.len()}));
    state.db.audit().record(&audit).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{}.zip\"", inspection.code),
            ),
        ],
        bytes,
    )
        .into_response())
}
