//! SIP messages (RFC 3261 §7): parsing, typed header access and serialisation, sans-IO.
//!
//! [`parse_datagram`] takes one UDP datagram; [`StreamFramer`] cuts a TCP byte stream into
//! messages by `Content-Length` (RFC 3261 §18.3) and skips CRLF keep-alives (RFC 5626 §3.5.1).
//! Both are lenient where devices in the field are sloppy and strict where it matters:
//!
//! * header names are case-insensitive and compact forms (`v`, `f`, `t`, `i`, `l`, `c`, `m`,
//!   `k`, `e`, `s`, `o`) are expanded to their full names;
//! * bare `LF` line ends are accepted beside `CRLF`; folded header lines are joined;
//! * a request must carry `Via`, `From`, `To`, `Call-ID` and `CSeq`, and the `CSeq` method must
//!   match the request method. When the headers could be read but a rule fails, the error keeps
//!   the partial message so the caller can still answer `400 Bad Request` with the reason.
//!
//! Bounds: [`MAX_HEADER_BYTES`] of start line and headers, [`MAX_HEADERS`] header lines,
//! [`MAX_BODY_BYTES`] of body. Nothing here allocates more than the input it is given.

use std::fmt::{self, Write as _};

/// Largest start line plus header section accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines accepted in one message.
pub const MAX_HEADERS: usize = 128;
/// Largest body accepted (catalog responses of big platforms stay well below).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Why bytes are not a SIP message. `partial` holds what could be read when the start line and
/// headers parsed, so a `400` can still be addressed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// What is wrong, for the log and the `400` reason phrase.
    pub reason: String,
    /// The message as far as it could be read.
    pub partial: Option<Box<Message>>,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            partial: None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`
    Request {
        /// Method, upper case as sent (methods are case-sensitive).
        method: String,
        /// Request-URI as sent.
        uri: String,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// Status code, 100–699.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// One SIP message. Header order is kept; names are stored in their canonical spelling for the
/// headers this crate knows and as received otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// Headers in order of appearance.
    pub headers: Vec<(String, String)>,
    /// The body (exactly `Content-Length` bytes when the header is present).
    pub body: Vec<u8>,
}

const KNOWN: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Max-Forwards",
    "Expires",
    "Authorization",
    "WWW-Authenticate",
    "User-Agent",
    "Server",
    "Event",
    "Subscription-State",
    "Subject",
    "Date",
    "Allow",
    "Supported",
    "Content-Encoding",
    "Route",
    "Record-Route",
    "Accept",
];

/// The canonical spelling of a header name: compact forms expanded, known names normalised.
pub fn canonical_name(name: &str) -> String {
    let expanded = match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "m" | "M" => "Contact",
        "k" | "K" => "Supported",
        "e" | "E" => "Content-Encoding",
        "s" | "S" => "Subject",
        "o" | "O" => "Event",
        _ => name,
    };
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(expanded))
        .map(|k| (*k).to_string())
        .unwrap_or_else(|| expanded.to_string())
}

impl Message {
    /// A request with no headers yet.
    pub fn request(method: &str, uri: &str) -> Self {
        Self {
            start: StartLine::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The method of a request, or the `CSeq` method of a response.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => self.cseq().map(|c| c.1),
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of a header (case-insensitive name; compact forms are already expanded).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Append a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Replace every value of a header by one.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.push(name, value)
    }

    /// `Call-ID`.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// `CSeq` as (number, method).
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_ascii_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = it.next()?;
        Some((n, m))
    }

    /// The `From` header parsed.
    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.header("From")?)
    }

    /// The `To` header parsed.
    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.header("To")?)
    }

    /// The top `Via` parsed.
    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.header("Via")?)
    }

    /// Registration lifetime asked for: `Expires` header, else the first contact's `expires`
    /// parameter.
    pub fn expires(&self) -> Option<u32> {
        if let Some(v) = self.header("Expires") {
            return v.trim().parse().ok();
        }
        let contact = NameAddr::parse(self.header("Contact")?)?;
        contact.param("expires")?.parse().ok()
    }

    /// Body as text, decoded by the charset of `Content-Type` or the XML declaration
    /// (GB2312/GBK/GB18030 are common; UTF-8 is the fallback).
    pub fn body_text(&self) -> String {
        decode_body(&self.body, self.header("Content-Type"))
    }

    /// Serialise. `Content-Length` is set from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// A response to this request (RFC 3261 §8.2.6): `Via` (all), `From`, `To` (with `to_tag`
    /// added when it has none), `Call-ID` and `CSeq` copied.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut r = Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for (n, v) in &self.headers {
            if n == "Via" {
                r.headers.push((n.clone(), v.clone()));
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = self.header(name) {
                let mut v = v.to_string();
                if name == "To" && code > 100 {
                    if let (Some(tag), Some(na)) = (to_tag, NameAddr::parse(&v)) {
                        if na.param("tag").is_none() {
                            v.push_str(";tag=");
                            v.push_str(tag);
                        }
                    }
                }
                r.headers.push((name.to_string(), v));
            }
        }
        r
    }
}

/// Decode a body. Valid UTF-8 is read as UTF-8 whatever it declares (devices declare `GB2312`
/// and send UTF-8; GBK-encoded Chinese is practically never valid UTF-8). Otherwise the declared
/// charset (`Content-Type: …;charset=`, else the XML declaration's `encoding=`) is used, GB2312
/// and GBK read as GB18030 (their superset), and GB18030 when nothing usable is declared.
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> String {
    if let Ok(s) = std::str::from_utf8(body) {
        return s.to_string();
    }
    let declared = content_type
        .and_then(|ct| {
            ct.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("charset")
                    .then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .or_else(|| xml_declared_encoding(body));
    let enc = declared
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .unwrap_or(encoding_rs::GB18030);
    let enc = if enc == encoding_rs::GBK || enc == encoding_rs::UTF_8 {
        encoding_rs::GB18030
    } else {
        enc
    };
    let (text, _, _) = enc.decode(body);
    text.into_owned()
}

fn xml_declared_encoding(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(200)];
    let head = std::str::from_utf8(head)
        .ok()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(head).into_owned());
    let decl_end = head.find("?>")?;
    let decl = &head[..decl_end];
    let i = decl.find("encoding")?;
    let rest = decl[i + 8..].trim_start().strip_prefix('=')?.trim_start();
    let q = rest.chars().next()?;
    if q != '"' && q != '\'' {
        return None;
    }
    let rest = &rest[1..];
    Some(rest[..rest.find(q)?].to_string())
}

/// A `name-addr` or `addr-spec` with parameters: `"Name" <sip:user@host>;tag=x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display: Option<String>,
    /// The URI.
    pub uri: SipUri,
    /// Header parameters after the URI (`tag`, `expires`, …), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parse one name-addr (the first, when a header holds a comma-separated list).
    pub fn parse(value: &str) -> Option<NameAddr> {
        let v = value.trim();
        let (display, uri_part, rest) = if let Some(lt) = v.find('<') {
            let gt = lt + v[lt..].find('>')?;
            let d = v[..lt].trim().trim_matches('"').trim();
            (
                (!d.is_empty()).then(|| d.to_string()),
                &v[lt + 1..gt],
                &v[gt + 1..],
            )
        } else {
            // addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10).
            let end = v.find([';', ',']).unwrap_or(v.len());
            (None, &v[..end], &v[end..])
        };
        let uri = SipUri::parse(uri_part)?;
        let rest = rest.split(',').next().unwrap_or("");
        Some(NameAddr {
            display,
            uri,
            params: parse_params(rest),
        })
    }

    /// A parameter's value (`None` when absent; `Some("")` for a flag).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (
                k.trim().to_ascii_lowercase(),
                Some(v.trim().trim_matches('"').to_string()),
            ),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect()
}

/// A `sip:` / `sips:` URI: user, host, port and URI parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: String,
    /// The user part (for GB/T 28181, a 20-digit id).
    pub user: Option<String>,
    /// Host (a domain such as `3402000000`, or an address).
    pub host: String,
    /// Port when given.
    pub port: Option<u16>,
    /// URI parameters.
    pub params: Vec<(String, Option<String>)>,
}

impl SipUri {
    /// Parse `sip:user@host:port;params`.
    pub fn parse(s: &str) -> Option<SipUri> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return None;
        }
        let rest = rest.split('?').next().unwrap_or(rest);
        let (main, params) = match rest.find(';') {
            Some(i) => (&rest[..i], parse_params(&rest[i..])),
            None => (rest, Vec::new()),
        };
        let (user, hostport) = match main.rfind('@') {
            Some(i) => (Some(&main[..i]), &main[i + 1..]),
            None => (None, main),
        };
        let user = user.map(|u| u.split(':').next().unwrap_or(u).to_string());
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return None;
        }
        Some(SipUri {
            scheme: scheme.to_ascii_lowercase(),
            user: user.filter(|u| !u.is_empty()),
            host,
            port,
            params,
        })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

fn split_host_port(hp: &str) -> Option<(String, Option<u16>)> {
    let hp = hp.trim();
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = rest[..end].to_string();
        let port = match rest[end + 1..].strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        return Some((host, port));
    }
    match hp.split_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.trim().parse().ok()?))),
        None => Some((hp.to_string(), None)),
    }
}

/// One `Via` value: `SIP/2.0/UDP host:port;branch=…;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, … upper-cased.
    pub transport: String,
    /// sent-by host.
    pub host: String,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters, names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parse the first value of a `Via` header.
    pub fn parse(value: &str) -> Option<Via> {
        let first = value.split(',').next()?.trim();
        let (proto, rest) = first.split_once(char::is_whitespace)?;
        let transport = proto.rsplit('/').next()?.trim().to_ascii_uppercase();
        if !proto.to_ascii_uppercase().starts_with("SIP/2.0/") {
            return None;
        }
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], parse_params(&rest[i..])),
            None => (rest, Vec::new()),
        };
        let (host, port) = split_host_port(sent_by)?;
        Some(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == "branch")
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `rport` was asked for (RFC 3581).
    pub fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|(n, _)| n == name)
    }
}

/// Parse one UDP datagram. Trailing bytes past `Content-Length` are ignored (RFC 3261 §18.3);
/// without `Content-Length` the rest of the datagram is the body.
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    let buf = skip_leading_crlf(buf);
    let Some((head_len, body_start)) = find_header_end(buf) else {
        if buf.len() > MAX_HEADER_BYTES {
            return Err(ParseError::new("header section too long"));
        }
        return Err(ParseError::new("no blank line after the headers"));
    };
    let mut msg = parse_head(&buf[..head_len])?;
    let rest = &buf[body_start..];
    let body = match content_length(&msg) {
        Ok(Some(n)) if n <= rest.len() => &rest[..n],
        Ok(Some(n)) => {
            return Err(with_partial(
                format!("body is {} bytes, Content-Length says {n}", rest.len()),
                msg,
            ))
        }
        Ok(None) => rest,
        Err(e) => return Err(with_partial(e, msg)),
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(with_partial("body too large", msg));
    }
    msg.body = body.to_vec();
    validate(msg)
}

fn with_partial(reason: impl Into<String>, msg: Message) -> ParseError {
    ParseError {
        reason: reason.into(),
        partial: Some(Box::new(msg)),
    }
}

fn content_length(msg: &Message) -> Result<Option<usize>, String> {
    match msg.header("Content-Length") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("Content-Length {v:?} is not a number")),
    }
}

fn skip_leading_crlf(mut buf: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = buf {
        buf = rest;
    }
    buf
}

/// (end of the header section, start of the body): the first empty line, CRLF or bare LF.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let limit = buf.len().min(MAX_HEADER_BYTES + 4);
    let mut i = 0;
    while i < limit {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse_head(head: &[u8]) -> Result<Message, ParseError> {
    if head.len() > MAX_HEADER_BYTES {
        return Err(ParseError::new("header section too long"));
    }
    let text = std::str::from_utf8(head).map_err(|e| {
        ParseError::new(format!(
            "header section is not UTF-8 at byte {}",
            e.valid_up_to()
        ))
    })?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let start = parse_start_line(first)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous header (RFC 3261 §7.3.1).
            match headers.last_mut() {
                Some((_, v)) => {
                    let more = line.trim();
                    if !v.is_empty() && !more.is_empty() {
                        v.push(' ');
                    }
                    v.push_str(more);
                    continue;
                }
                None => return Err(ParseError::new("continuation line before any header")),
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::new(format!(
                "header line {} has no colon: {:?}",
                n + 2,
                truncate(line, 40)
            )));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseError::new(format!(
                "header line {} has a bad name {:?}",
                n + 2,
                truncate(name, 40)
            )));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ParseError::new("too many headers"));
        }
        headers.push((canonical_name(name), value.trim().to_string()));
    }
    Ok(Message {
        start,
        headers,
        body: Vec::new(),
    })
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let rest = rest.trim_start();
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| {
                ParseError::new(format!(
                    "status code {:?} is not 100–699",
                    truncate(code, 8)
                ))
            })?;
        return Ok(StartLine::Response {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::new(format!(
            "start line {:?} is not \"METHOD URI SIP/2.0\"",
            truncate(line, 60)
        )));
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::new(format!(
            "version {:?} is not SIP/2.0",
            truncate(version, 16)
        )));
    }
    if !method.bytes().all(is_token_char) {
        return Err(ParseError::new(format!(
            "method {:?} is not a token",
            truncate(method, 16)
        )));
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

fn validate(msg: Message) -> Result<Message, ParseError> {
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if msg.header(name).is_none() {
            return Err(with_partial(format!("missing {name} header"), msg));
        }
    }
    let Some((_, cseq_method)) = msg.cseq() else {
        let v = msg.header("CSeq").unwrap_or("").to_string();
        return Err(with_partial(
            format!("CSeq {v:?} is not \"number METHOD\""),
            msg,
        ));
    };
    if let StartLine::Request { method, .. } = &msg.start {
        if method != cseq_method {
            let reason =
                format!("CSeq method {cseq_method} does not match request method {method}");
            return Err(with_partial(reason, msg));
        }
    }
    if msg.top_via().is_none() {
        let v = msg.header("Via").unwrap_or("").to_string();
        return Err(with_partial(
            format!("Via {:?} cannot be read", truncate(&v, 60)),
            msg,
        ));
    }
    if msg.from().is_none() {
        return Err(with_partial("From header cannot be read", msg));
    }
    if msg.to().is_none() {
        return Err(with_partial("To header cannot be read", msg));
    }
    Ok(msg)
}

/// What a [`StreamFramer`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Framed {
    /// A whole message.
    Message(Message),
    /// A message that parsed badly; the stream continues after it (its length was known).
    Bad(ParseError),
}

/// Cuts a TCP byte stream into SIP messages by `Content-Length`. Push bytes with
/// [`StreamFramer::push`], then call [`StreamFramer::next`] until it returns `Ok(None)` ("need
/// more bytes"). An `Err` means the stream cannot be framed any more (no header end within
/// [`MAX_HEADER_BYTES`], a missing or bad `Content-Length`): close the connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next message, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Framed>, ParseError> {
        let lead = self.buf.len() - skip_leading_crlf(&self.buf).len();
        if lead > 0 {
            self.buf.drain(..lead);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((head_len, body_start)) = find_header_end(&self.buf) else {
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(ParseError::new("header section too long"));
            }
            return Ok(None);
        };
        let head = parse_head(&self.buf[..head_len])?;
        let len = match content_length(&head) {
            Ok(Some(n)) => n,
            // RFC 3261 §18.3: Content-Length is mandatory on streams; treat absence as no body.
            Ok(None) => 0,
            Err(e) => return Err(ParseError::new(e)),
        };
        if len > MAX_BODY_BYTES {
            return Err(ParseError::new(format!(
                "Content-Length {len} is too large"
            )));
        }
        if self.buf.len() < body_start + len {
            return Ok(None);
        }
        let mut msg = head;
        msg.body = self.buf[body_start..body_start + len].to_vec();
        self.buf.drain(..body_start + len);
        Ok(Some(match validate(msg) {
            Ok(m) => Framed::Message(m),
            Err(e) => Framed::Bad(e),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1371463273\r\n\
From: <sip:34020000001320000001@3402000000>;tag=2043466181\r\n\
To: <sip:34020000001320000001@3402000000>\r\n\
Call-ID: 1011047669\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:34020000001320000001@192.168.1.64:5060>\r\n\
Max-Forwards: 70\r\n\
User-Agent: IP Camera\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_a_register() {
        let m = parse_datagram(REGISTER.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.cseq(), Some((1, "REGISTER")));
        assert_eq!(m.expires(), Some(3600));
        let from = m.from().unwrap();
        assert_eq!(from.uri.user.as_deref(), Some("34020000001320000001"));
        assert_eq!(from.param("tag"), Some("2043466181"));
        let via = m.top_via().unwrap();
        assert_eq!(via.branch(), Some("z9hG4bK1371463273"));
        assert!(via.has_param("rport"));
        assert_eq!((via.host.as_str(), via.port), ("192.168.1.64", Some(5060)));
    }

    #[test]
    fn compact_forms_and_odd_casing() {
        let raw = "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\n\
v: SIP/2.0/udp 10.0.0.2:5060;branch=z9hG4bKa\n\
f: <sip:34020000001320000001@3402000000>;tag=1\n\
t: <sip:34020000002000000001@3402000000>\n\
i: abc\n\
CSEQ: 20 MESSAGE\n\
CONTENT-type: Application/MANSCDP+xml\n\
l: 5\n\nhello";
        let m = parse_datagram(raw.as_bytes()).unwrap();
        assert_eq!(m.call_id(), Some("abc"));
        assert_eq!(m.header("content-type"), Some("Application/MANSCDP+xml"));
        assert_eq!(m.body, b"hello");
        assert_eq!(m.top_via().unwrap().transport, "UDP");
    }

    #[test]
    fn folded_headers_are_joined() {
        let raw = REGISTER.replace("User-Agent: IP Camera\r\n", "User-Agent: IP\r\n Camera\r\n");
        let m = parse_datagram(raw.as_bytes()).unwrap();
        assert_eq!(m.header("User-Agent"), Some("IP Camera"));
    }

    #[test]
    fn rules_keep_the_partial_message() {
        let raw = REGISTER.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
        let e = parse_datagram(raw.as_bytes()).unwrap_err();
        assert!(e.reason.contains("CSeq method"), "{e}");
        let partial = e.partial.unwrap();
        assert_eq!(partial.call_id(), Some("1011047669"));
        let raw = REGISTER.replace("Call-ID: 1011047669\r\n", "");
        assert_eq!(
            parse_datagram(raw.as_bytes()).unwrap_err().reason,
            "missing Call-ID header"
        );
    }

    #[test]
    fn bad_start_lines_and_lengths() {
        for (raw, want) in [
            ("HELLO\r\n\r\n", "start line"),
            ("REGISTER sip:a SIP/3.0\r\n\r\n", "version"),
            ("SIP/2.0 99 Odd\r\n\r\n", "status code"),
            ("REGISTER sip:a SIP/2.0\r\nVia\r\n\r\n", "no colon"),
            ("REGISTER sip:a SIP/2.0\r\n", "no blank line"),
        ] {
            let e = parse_datagram(raw.as_bytes()).unwrap_err();
            assert!(e.reason.contains(want), "{raw:?}: {e}");
        }
        let raw = REGISTER.replace("Content-Length: 0", "Content-Length: 10");
        assert!(parse_datagram(raw.as_bytes())
            .unwrap_err()
            .reason
            .contains("Content-Length says 10"));
        let raw = REGISTER.replace("Content-Length: 0", "Content-Length: x");
        assert!(parse_datagram(raw.as_bytes())
            .unwrap_err()
            .reason
            .contains("not a number"));
    }

    #[test]
    fn response_copies_dialog_headers() {
        let m = parse_datagram(REGISTER.as_bytes()).unwrap();
        let r = m.response(200, "OK", Some("srv"));
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("To: <sip:34020000001320000001@3402000000>;tag=srv\r\n"));
        let back = parse_datagram(text.as_bytes()).unwrap();
        assert_eq!(back.status(), Some(200));
        assert_eq!(back.method(), Some("REGISTER"));
        assert_eq!(back.call_id(), m.call_id());
    }

    #[test]
    fn gb2312_bodies_are_decoded() {
        let xml = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Name>执法记录仪</Name>";
        let (bytes, _, _) = encoding_rs::GBK.encode(xml);
        assert_eq!(decode_body(&bytes, Some("Application/MANSCDP+xml")), xml);
        assert_eq!(
            decode_body(&bytes, Some("Application/MANSCDP+xml; charset=GB18030")),
            xml
        );
        // Declared GB2312 but sent as UTF-8: read as UTF-8.
        assert_eq!(
            decode_body(xml.as_bytes(), Some("Application/MANSCDP+xml")),
            xml
        );
        // Undeclared GBK is read as GB18030.
        let (bytes, _, _) = encoding_rs::GBK.encode("<Name>通道</Name>");
        assert_eq!(decode_body(&bytes, None), "<Name>通道</Name>");
    }

    #[test]
    fn stream_framer_splits_and_waits() {
        let one = REGISTER.as_bytes();
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(one);
        two.extend_from_slice(one);
        let mut f = StreamFramer::new();
        let mut got = 0;
        for b in two.chunks(7) {
            f.push(b);
            while let Some(Framed::Message(m)) = f.next().unwrap() {
                assert_eq!(m.method(), Some("REGISTER"));
                got += 1;
            }
        }
        assert_eq!((got, f.buffered()), (2, 0));
        let mut f = StreamFramer::new();
        f.push(&vec![b'a'; MAX_HEADER_BYTES + 10]);
        assert!(f.next().is_err());
    }

    #[test]
    fn uris() {
        let u = SipUri::parse("sip:34020000001320000001@[::1]:5060;transport=tcp").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", Some(5060)));
        assert_eq!(
            u.to_string(),
            "sip:34020000001320000001@[::1]:5060;transport=tcp"
        );
        assert!(SipUri::parse("tel:123").is_none());
        let na = NameAddr::parse("\"cam 1\" <sip:a@b>;expires=60").unwrap();
        assert_eq!(
            (na.display.as_deref(), na.param("expires")),
            (Some("cam 1"), Some("60"))
        );
        let na = NameAddr::parse("sip:a@b;tag=7").unwrap();
        assert_eq!(na.param("tag"), Some("7"));
    }
}
