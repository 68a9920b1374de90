//! HLS playback of recordings: the playlist, its segments, the AAC variant.
//!
//! The playlist's segment URLs carry a media token opening only the segments it lists (see
//! [`crate::auth::MediaGrant::Segments`]), so a player needs no header; a browser sends its
//! session cookie as well, which wins.

use super::*;

/// These routes.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(playlist))
        .routes(routes!(segment_init))
        .routes(routes!(segment_media))
}

/// HLS playlist (fMP4, VOD) of a time range: the overlapping segments, starting at `from`.
/// Audited (`recording.play`) — the start of a playback.
#[utoipa::path(get, path = "/recordings/{id}/playlist.m3u8", tag = "recordings", params(("id" = String, Path), RangeQuery),
    responses((status = 200, content_type = "application/vnd.apple.mpegurl"), (status = 404, body = ErrorBody)))]
async fn playlist(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    let (segs, from, _) = segments_of(&state, &r, &q).await?;
    let aac = aac_wanted(&r, &q)?;
    // The segment URLs carry a token for exactly these segments of this recording, minted in
    // the caller's session: it lives `auth.media_token_ttl_secs` plus the length of the footage
    // listed, so a player that starts at once plays it through at normal speed (one more TTL
    // of pauses); it dies earlier with the session. A player that waits longer reloads the
    // playlist for fresh tokens.
    let (first, last) = (&segs[0], &segs[segs.len() - 1]);
    let listed_ms = (last.end_90k - first.start_90k).max(0) / 90;
    let exp = state.now() + state.cfg.auth.media_token_ttl_secs as i64 * 1000 + listed_ms;
    let grant = crate::auth::MediaGrant::Segments {
        recording_id: id.clone(),
        first_seq: segs.iter().map(|s| s.seq).min().unwrap_or(first.seq),
        last_seq: segs.iter().map(|s| s.seq).max().unwrap_or(last.seq),
    };
    let token = crate::auth::mint_media_token(&state, &caller, grant, exp)?;
    let query = format!(
        "?media_token={token}{}",
        if aac { "&audio=aac" } else { "&audio=original" }
    );
    let secs = |t: i64| t as f64 / 90_000.0;
    let target = segs
        .iter()
        .map(|s| secs(s.end_90k - s.start_90k).ceil() as i64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut m = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    if let Some(f) = from {
        let off = secs((f - segs[0].start_90k).max(0));
        if off > 0.0 {
            m.push_str(&format!("#EXT-X-START:TIME-OFFSET={off:.3},PRECISE=YES\n"));
        }
    }
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            // Each file has its own init section; transcoded audio restarts at 0 per file.
            m.push_str("#EXT-X-DISCONTINUITY\n");
        }
        m.push_str(&format!(
            "#EXT-X-MAP:URI=\"segments/{seq}/init.mp4{query}\"\n#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:{dur:.3},\nsegments/{seq}/media.m4s{query}\n",
            seq = s.seq,
            dur = secs(s.end_90k - s.start_90k),
            pdt = chrono::DateTime::from_timestamp_millis(s.start_ms)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        ));
    }
    m.push_str("#EXT-X-ENDLIST\n");
    let audit = caller
        .audit("recording.play", state.now())
        .target("recording", &id)
        .details(serde_json::json!({"from": q.from, "to": q.to, "device_id": r.device_id}));
    state.db.audit().record(&audit).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        m,
    )
        .into_response())
}

/// A stored segment (or its AAC variant) with its layout.
async fn segment_file(
    state: &AppState,
    caller: &Caller,
    id: &str,
    seq: i64,
    q: &RangeQuery,
) -> ApiResult<(Arc<Vec<u8>>, usize)> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, id).await?;
    let s = state.db.recordings().segment(id, seq).await?;
    let aac = aac_wanted(&r, q)?;
    if !aac {
        let data = state.blobs.get(&s.blob_key).await?;
        return Ok((Arc::new(data), s.init_bytes as usize));
    }
    segment_aac(state, id, seq, &s).await
}

/// A segment's AAC variant (transcoded once, kept while it is being played).
async fn segment_aac(
    state: &AppState,
    id: &str,
    seq: i64,
    s: &Segment,
) -> ApiResult<(Arc<Vec<u8>>, usize)> {
    let key = (id.to_string(), seq);
    if let Some(hit) = transcoded()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(hit.clone());
    }
    let data = state.blobs.get(&s.blob_key).await?;
    let out = to_aac(state, &data).await?;
    let init = layout(&out)
        .map(|l| l.init_len)
        .ok_or_else(|| ApiError::internal("the transcoded segment has no init section"))?;
    let v = (Arc::new(out), init);
    let mut cache = transcoded().lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= 32 {
        cache.clear();
    }
    cache.insert(key, v.clone());
    Ok(v)
}

type Transcoded = Mutex<HashMap<(String, i64), (Arc<Vec<u8>>, usize)>>;

/// Recently transcoded segments (a player asks for the init and the media of each).
fn transcoded() -> &'static Transcoded {
    static CACHE: OnceLock<Transcoded> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A segment with its G.711 or Opus audio as AAC (video copied), by ffmpeg (in one of the
/// node's helper slots, stopped at its timeout).
async fn to_aac(state: &AppState, data: &[u8]) -> ApiResult<Vec<u8>> {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args([
        "-v",
        "error",
        "-f",
        "mp4",
        "-i",
        "pipe:0",
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-b:a",
        "48k",
        "-ar",
        "16000",
        "-f",
        "mp4",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "pipe:1",
    ]);
    let out = state
        .subprocesses
        .run("audio transcoding (ffmpeg)", cmd, data.to_vec())
        .await?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(ApiError::internal(format!(
            "transcoding the audio failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

fn media_response(ct: &'static str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response()
}

/// A segment's init section (HLS `EXT-X-MAP`).
#[utoipa::path(get, path = "/recordings/{id}/segments/{seq}/init.mp4", tag = "recordings",
    params(("id" = String, Path), ("seq" = i64, Path), RangeQuery),
    responses((status = 200, content_type = "video/mp4"), (status = 404, body = ErrorBody)))]
async fn segment_init(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    caller.require(Perm::RecordingView)?;
    let r = state.db.recordings().get(&caller.scope, &id).await?;
    if !aac_wanted(&r, &q)? {
        // Only the init section is read from the store.
        let s = state.db.recordings().segment(&id, seq).await?;
        let init = state
            .blobs
            .get_range(&s.blob_key, 0, s.init_bytes as u64)
            .await?;
        return Ok(media_response("video/mp4", init));
    }
    let (data, init) = segment_file(&state, &caller, &id, seq, &q).await?;
    Ok(media_response(
        "video/mp4",
        data[..init.min(data.len())].to_vec(),
    ))
}

/// A segment's fragments (HLS media segment).
#[utoipa::path(get, path = "/recordings/{id}/segments/{seq}/media.m4s", tag = "recordings",
    params(("id" = String, Path), ("seq" = i64, Path), RangeQuery),
    responses((status = 200, content_type = "video/iso.segment"), (status = 404, body = ErrorBody)))]
async fn segment_media(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, seq)): Path<(String, i64)>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Response> {
    let (data, init) = segment_file(&state, &caller, &id, seq, &q).await?;
    Ok(media_response(
        "video/iso.segment",
        data[init.min(data.len())..].to_vec(),
    ))
}
