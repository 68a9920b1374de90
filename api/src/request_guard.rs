//! The first look at every HTTP request, before routing and extractors: a URI that no decoder
//! could read truthfully is answered here, with a `4xx` naming the problem, instead of being
//! decoded lossily (or not at all) by whichever extractor meets it first.
//!
//! - longer than `http.max_uri_bytes` → `414 uri_too_long`;
//! - a `%` not followed by two hex digits, in the path or the query → `400 malformed_uri`;
//! - a path, or a query parameter's name or value, that is not UTF-8 once decoded →
//!   `400 malformed_uri` (naming the parameter).
//!
//! [`check_uri`] is pure and clock-free; [`reject_malformed_uri`] is its middleware.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriProblem {
    /// Longer than the limit (bytes, limit).
    TooLong(usize, usize),
    /// A `%` at this byte of the part is not followed by two hex digits.
    BadEscape(&'static str, usize),
    /// The part (and, for the query, the parameter) is not UTF-8 once decoded.
    NotUtf8(&'static str, Option<String>),
}

impl std::fmt::Display for UriProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UriProblem::TooLong(n, max) => {
                write!(f, "the URL is {n} bytes long; at most {max} are accepted")
            }
            UriProblem::BadEscape(part, at) => write!(
                f,
                "the {part} has a '%' at byte {at} that is not followed by two hex digits"
            ),
            UriProblem::NotUtf8(part, None) => {
                write!(f, "the {part} is not valid UTF-8 once percent-decoded")
            }
            UriProblem::NotUtf8(part, Some(name)) => write!(
                f,
                "the {part} parameter {name:?} is not valid UTF-8 once percent-decoded"
            ),
        }
    }
}

/// Percent-decode `s` strictly: every `%` starts an escape of two hex digits.
fn decode(part: &'static str, s: &str, offset: usize) -> Result<Vec<u8>, UriProblem> {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => return Err(UriProblem::BadEscape(part, offset + i)),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Ok(out)
}

/// Check a request's path and query (as they arrived, still percent-encoded).
pub fn check_uri(path: &str, query: Option<&str>, max_bytes: usize) -> Result<(), UriProblem> {
    let len = path.len() + query.map_or(0, |q| q.len() + 1);
    if len > max_bytes {
        return Err(UriProblem::TooLong(len, max_bytes));
    }
    let p = decode("path", path, 0)?;
    if std::str::from_utf8(&p).is_err() {
        return Err(UriProblem::NotUtf8("path", None));
    }
    let Some(q) = query else { return Ok(()) };
    let mut at = 0;
    for pair in q.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let n = decode("query", name, at)?;
        let name_text = std::str::from_utf8(&n)
            .map_err(|_| UriProblem::NotUtf8("query", None))?
            .replace('+', " ");
        let v = decode("query", value, at + name.len() + 1)?;
        if std::str::from_utf8(&v).is_err() {
            return Err(UriProblem::NotUtf8("query", Some(name_text)));
        }
        at += pair.len() + 1;
    }
    Ok(())
}

/// The middleware: refuse a URI [`check_uri`] refuses, in the API's error format.
pub async fn reject_malformed_uri(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let uri = req.uri();
    match check_uri(uri.path(), uri.query(), state.cfg.http.max_uri_bytes) {
        Ok(()) => next.run(req).await,
        Err(p @ UriProblem::TooLong(..)) => {
            ApiError::new(StatusCode::URI_TOO_LONG, "uri_too_long", p.to_string()).into_response()
        }
        Err(p) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_uri", p.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_encoded_uris_pass() {
        assert_eq!(check_uri("/api/v1/enterprises", None, 8192), Ok(()));
        assert_eq!(
            check_uri(
                "/api/v1/enterprises",
                Some("q=%E5%8C%96%E5%B7%A5&page_size=20&x&y="),
                8192
            ),
            Ok(())
        );
        assert_eq!(check_uri("/api/v1/a%20b", Some("q=a+b"), 8192), Ok(()));
    }

    #[test]
    fn the_review_s_url_is_refused_with_its_reason() {
        // `GET /api/v1/auth/me?media_token=%a<raw é>` once panicked a decoder.
        let q = "media_token=%a\u{e9}";
        assert_eq!(
            check_uri("/api/v1/auth/me", Some(q), 8192),
            Err(UriProblem::BadEscape("query", 12))
        );
    }

    #[test]
    fn bad_escapes_anywhere_are_named() {
        assert_eq!(
            check_uri("/api/v1/x%zz", None, 8192),
            Err(UriProblem::BadEscape("path", 9))
        );
        assert_eq!(
            check_uri("/api/v1/x%", None, 8192),
            Err(UriProblem::BadEscape("path", 9))
        );
        assert_eq!(
            check_uri("/p", Some("a=1&b%4"), 8192),
            Err(UriProblem::BadEscape("query", 5))
        );
        assert_eq!(
            check_uri("/p", Some("a=1&b=%g1"), 8192),
            Err(UriProblem::BadEscape("query", 6))
        );
    }

    #[test]
    fn invalid_utf8_is_named_with_its_parameter() {
        assert_eq!(
            check_uri("/api/v1/enterprises/%FF", None, 8192),
            Err(UriProblem::NotUtf8("path", None))
        );
        assert_eq!(
            check_uri("/p", Some("q=%C3%28"), 8192),
            Err(UriProblem::NotUtf8("query", Some("q".into())))
        );
        assert_eq!(
            check_uri("/p", Some("%FF=1"), 8192),
            Err(UriProblem::NotUtf8("query", None))
        );
    }

    #[test]
    fn overlong_uris_are_refused() {
        let long = "9".repeat(9000);
        assert_eq!(
            check_uri(&format!("/api/v1/units/{long}"), None, 8192),
            Err(UriProblem::TooLong(9014, 8192))
        );
        assert_eq!(
            check_uri("/p", Some(&format!("q={long}")), 8192),
            Err(UriProblem::TooLong(9005, 8192))
        );
    }
}
