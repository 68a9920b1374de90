//! MANSCDP XML bodies (GB/T 28181 §A): reading what devices send, writing what the platform asks.
//!
//! Device XML is read leniently — devices declare `GB2312` and send GBK, leave `&` unescaped,
//! close tags with the wrong case — but boundedly: at most [`MAX_DEPTH`] levels and
//! [`MAX_ELEMENTS`] elements. Every field except the command type and the device id is
//! optional: handlers of other systems crash on a `MobilePosition` without `Speed`; this one
//! does not. Decoding the charset is the caller's job ([`crate::sip::Message::body_text`]).

use quick_xml::events::Event;
use quick_xml::Reader;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 8;
/// Most elements accepted in one body (a 1,000-channel catalog page is far below).
pub const MAX_ELEMENTS: usize = 20_000;

/// Why a body is not usable MANSCDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManscdpError {
    /// Not XML (or not well-formed enough to read).
    #[error("body is not XML: {0}")]
    Xml(String),
    /// Nesting or size beyond the bounds.
    #[error("body is too deep or too large")]
    TooLarge,
    /// No `CmdType` or `DeviceID`.
    #[error("body has no {0}")]
    Missing(&'static str),
    /// A field is present but unreadable.
    #[error("field {field} {value:?} cannot be read")]
    Field {
        /// Element name.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// A parsed XML element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Concatenated, trimmed text content.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// First child by name (ASCII case-insensitive).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Trimmed text of a child, `None` when absent or empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.as_str())
            .filter(|t| !t.is_empty())
    }
}

/// Parse XML text into its root element.
pub fn parse_tree(xml: &str) -> Result<Element, ManscdpError> {
    let xml = escape_stray_ampersands(xml);
    let mut reader = Reader::from_str(&xml);
    let cfg = reader.config_mut();
    cfg.check_end_names = false;
    cfg.trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| ManscdpError::Xml(format!("{e} at byte {}", reader.buffer_position())))?;
        match ev {
            Event::Start(s) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(ManscdpError::TooLarge);
                }
                stack.push(Element {
                    name: String::from_utf8_lossy(s.name().as_ref()).into_owned(),
                    ..Default::default()
                });
            }
            Event::Empty(s) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(ManscdpError::TooLarge);
                }
                let el = Element {
                    name: String::from_utf8_lossy(s.name().as_ref()).into_owned(),
                    ..Default::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => {}
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    let raw = String::from_utf8_lossy(t.as_ref()).into_owned();
                    let text = quick_xml::escape::unescape(&raw)
                        .map(|c| c.into_owned())
                        .unwrap_or(raw);
                    cur.text.push_str(text.trim());
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text
                        .push_str(String::from_utf8_lossy(t.as_ref()).trim());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(cur) = stack.last_mut() {
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    let resolved = match name.as_str() {
                        "amp" => "&".to_string(),
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        "quot" => "\"".to_string(),
                        "apos" => "'".to_string(),
                        n => n
                            .strip_prefix('#')
                            .and_then(|num| match num.strip_prefix('x') {
                                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                                None => num.parse().ok(),
                            })
                            .and_then(char::from_u32)
                            .map(String::from)
                            .unwrap_or_else(|| format!("&{n};")),
                    };
                    cur.text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(ManscdpError::Xml("end tag without start".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => {
                        if root.is_none() {
                            root = Some(done);
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        if root.is_some() && stack.is_empty() {
            // Anything after the root element (devices append NULs and junk) is ignored.
            break;
        }
    }
    root.ok_or_else(|| ManscdpError::Xml("no root element".into()))
}

/// Devices write `A&B` in names; escape every `&` that does not start a reference.
fn escape_stray_ampersands(xml: &str) -> std::borrow::Cow<'_, str> {
    if !xml.contains('&') {
        return std::borrow::Cow::Borrowed(xml);
    }
    let mut out = String::with_capacity(xml.len() + 16);
    let mut rest = xml;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let is_ref = after.find(';').is_some_and(|end| {
            let name = &after[..end];
            end <= 10
                && !name.is_empty()
                && (name.bytes().all(|b| b.is_ascii_alphabetic())
                    || name.strip_prefix('#').is_some_and(|n| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric())
                    }))
        });
        out.push_str(if is_ref { "&" } else { "&amp;" });
        rest = after;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// A device's position report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MobilePosition {
    /// `DeviceID` (often the channel id, not the device id).
    pub device_id: String,
    /// `Time` as UTC ms (devices send Beijing local time without a zone).
    pub time_ms: Option<i64>,
    /// WGS-84 longitude.
    pub lon: f64,
    /// WGS-84 latitude.
    pub lat: f64,
    /// km/h
    pub speed_kmh: Option<f64>,
    /// Degrees from north.
    pub heading_deg: Option<f64>,
    /// Metres.
    pub altitude_m: Option<f64>,
}

/// One record of a `RecordInfo` answer: footage stored on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordItem {
    /// Channel id.
    pub device_id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `FilePath`.
    pub file_path: Option<String>,
    /// `StartTime`, UTC ms.
    pub start_ms: i64,
    /// `EndTime`, UTC ms.
    pub end_ms: i64,
    /// `Type` (`time`, `alarm`, `manual`).
    pub kind: Option<String>,
    /// `FileSize`, bytes.
    pub file_size: Option<u64>,
}

/// One catalog item (a channel, or a sub-device).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CatalogItem {
    /// Channel id.
    pub device_id: String,
    /// Name (GB2312 in the wire body; decoded here).
    pub name: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Parent id.
    pub parent_id: Option<String>,
    /// `ON` / `OFF`.
    pub status: Option<String>,
}

/// An alarm notification.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alarm {
    /// Reporting id.
    pub device_id: String,
    /// `AlarmPriority` 1–4.
    pub priority: Option<u8>,
    /// `AlarmMethod` (1 phone, 2 device, 3 SMS, 4 GPS, 5 video, 6 fault, 7 other).
    pub method: Option<u8>,
    /// `AlarmType` inside `Info` (2022) when present.
    pub alarm_type: Option<u32>,
    /// Time as UTC ms.
    pub time_ms: Option<i64>,
    /// Description.
    pub description: Option<String>,
    /// Position when the device sent one.
    pub lon: Option<f64>,
    /// Position when the device sent one.
    pub lat: Option<f64>,
}

/// A MANSCDP body the platform understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `Notify/Keepalive`
    Keepalive {
        /// SN
        sn: Option<u32>,
        /// Device id.
        device_id: String,
    },
    /// `Notify/MobilePosition` (by `MESSAGE` or `NOTIFY`).
    MobilePosition(MobilePosition),
    /// `Notify/Alarm`
    Alarm(Alarm),
    /// `Response/Catalog` (one page of it).
    Catalog {
        /// SN of the query.
        sn: Option<u32>,
        /// Device id.
        device_id: String,
        /// `SumNum`: channels in all pages.
        sum: Option<u32>,
        /// This page's items.
        items: Vec<CatalogItem>,
    },
    /// `Response/DeviceInfo`
    DeviceInfo {
        /// SN
        sn: Option<u32>,
        /// Device id.
        device_id: String,
        /// `DeviceName`
        name: Option<String>,
        /// `Manufacturer`
        manufacturer: Option<String>,
        /// `Model`
        model: Option<String>,
        /// `Firmware`
        firmware: Option<String>,
        /// `Channel`
        channels: Option<u32>,
    },
    /// `Response/DeviceStatus`
    DeviceStatus {
        /// SN
        sn: Option<u32>,
        /// Device id.
        device_id: String,
        /// `Online` is `ONLINE`.
        online: Option<bool>,
        /// `Status` is `OK`.
        ok: Option<bool>,
        /// `Record` is `ON`.
        recording: Option<bool>,
    },
    /// `Response/RecordInfo` (one page of it): footage stored on the device.
    RecordInfo {
        /// SN of the query.
        sn: Option<u32>,
        /// Channel id.
        device_id: String,
        /// `SumNum`: records in all pages.
        sum: Option<u32>,
        /// This page's records.
        items: Vec<RecordItem>,
    },
    /// `Notify/MediaStatus`: `NotifyType` 121 = a playback or download reached its end.
    MediaStatus {
        /// Device id.
        device_id: String,
        /// `NotifyType`.
        notify_type: Option<u32>,
    },
    /// Anything else, kept by kind so it can be answered and logged.
    Other {
        /// Root element (`Notify`, `Response`, `Query`, `Control`).
        root: String,
        /// `CmdType`.
        cmd_type: String,
        /// Device id.
        device_id: String,
    },
}

fn num<T: std::str::FromStr>(el: &Element, name: &'static str) -> Result<Option<T>, ManscdpError> {
    match el.text_of(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ManscdpError::Field {
            field: name,
            value: v.chars().take(40).collect(),
        }),
    }
}

fn opt(el: &Element, name: &str) -> Option<String> {
    el.text_of(name).map(str::to_string)
}

/// Beijing local time (`2026-11-22T14:07:00`, with or without fraction, `T` or space) → UTC ms.
pub fn parse_local_time(s: &str) -> Option<i64> {
    let s = s.trim().replace(' ', "T");
    let s = s.strip_suffix('Z').unwrap_or(&s).to_string();
    let t = chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_millis() - 8 * 3_600_000)
}

/// UTC ms → Beijing local time as GB/T 28181 writes it (`Date:` header, query ranges).
pub fn format_local_time(utc_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(utc_ms + 8 * 3_600_000)
        .unwrap_or_default()
        .naive_utc();
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

fn time_field(el: &Element, name: &'static str) -> Result<Option<i64>, ManscdpError> {
    match el.text_of(name) {
        None => Ok(None),
        Some(v) => parse_local_time(v).map(Some).ok_or(ManscdpError::Field {
            field: name,
            value: v.chars().take(40).collect(),
        }),
    }
}

/// Parse a decoded MANSCDP body.
pub fn parse(xml: &str) -> Result<Body, ManscdpError> {
    let root = parse_tree(xml)?;
    let cmd = root
        .text_of("CmdType")
        .ok_or(ManscdpError::Missing("CmdType"))?
        .to_string();
    let device_id = root
        .text_of("DeviceID")
        .ok_or(ManscdpError::Missing("DeviceID"))?
        .to_string();
    let sn = num::<u32>(&root, "SN").ok().flatten();
    let kind = (root.name.as_str(), cmd.as_str());
    Ok(match kind {
        ("Notify", c) if c.eq_ignore_ascii_case("Keepalive") => Body::Keepalive { sn, device_id },
        ("Notify", c) if c.eq_ignore_ascii_case("MobilePosition") => {
            let (Some(lon), Some(lat)) = (
                num::<f64>(&root, "Longitude")?,
                num::<f64>(&root, "Latitude")?,
            ) else {
                // No fix (devices send this without satellites): valid, nothing to plot.
                return Ok(Body::Other {
                    root: "Notify".into(),
                    cmd_type: cmd,
                    device_id,
                });
            };
            if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                return Err(ManscdpError::Field {
                    field: "Longitude/Latitude",
                    value: format!("{lon},{lat}"),
                });
            }
            Body::MobilePosition(MobilePosition {
                device_id,
                time_ms: time_field(&root, "Time")?,
                lon,
                lat,
                speed_kmh: num(&root, "Speed")?,
                heading_deg: num(&root, "Direction")?,
                altitude_m: num(&root, "Altitude")?,
            })
        }
        ("Notify", c) if c.eq_ignore_ascii_case("Alarm") => {
            let info = root.child("Info");
            Body::Alarm(Alarm {
                device_id,
                priority: num(&root, "AlarmPriority")?,
                method: num(&root, "AlarmMethod")?,
                alarm_type: match info {
                    Some(i) => num(i, "AlarmType")?,
                    None => num(&root, "AlarmType")?,
                },
                time_ms: time_field(&root, "AlarmTime")?,
                description: opt(&root, "AlarmDescription"),
                lon: num(&root, "Longitude")?,
                lat: num(&root, "Latitude")?,
            })
        }
        ("Response", c) if c.eq_ignore_ascii_case("Catalog") => {
            let items = root
                .child("DeviceList")
                .map(|l| {
                    l.children
                        .iter()
                        .filter(|i| i.name.eq_ignore_ascii_case("Item"))
                        .filter_map(|i| {
                            Some(CatalogItem {
                                device_id: i.text_of("DeviceID")?.to_string(),
                                name: opt(i, "Name"),
                                manufacturer: opt(i, "Manufacturer"),
                                model: opt(i, "Model"),
                                parent_id: opt(i, "ParentID"),
                                status: opt(i, "Status"),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Body::Catalog {
                sn,
                device_id,
                sum: num(&root, "SumNum")?,
                items,
            }
        }
        ("Response", c) if c.eq_ignore_ascii_case("RecordInfo") => {
            let mut items = Vec::new();
            if let Some(l) = root.child("RecordList") {
                for i in l
                    .children
                    .iter()
                    .filter(|i| i.name.eq_ignore_ascii_case("Item"))
                {
                    let (Some(start_ms), Some(end_ms)) =
                        (time_field(i, "StartTime")?, time_field(i, "EndTime")?)
                    else {
                        continue;
                    };
                    if end_ms <= start_ms || items.len() >= 4096 {
                        continue;
                    }
                    items.push(RecordItem {
                        device_id: i.text_of("DeviceID").unwrap_or(&device_id).to_string(),
                        name: opt(i, "Name"),
                        file_path: opt(i, "FilePath"),
                        start_ms,
                        end_ms,
                        kind: opt(i, "Type"),
                        file_size: num(i, "FileSize").ok().flatten(),
                    });
                }
            }
            Body::RecordInfo {
                sn,
                device_id,
                sum: num(&root, "SumNum")?,
                items,
            }
        }
        ("Notify", c) if c.eq_ignore_ascii_case("MediaStatus") => Body::MediaStatus {
            device_id,
            notify_type: num(&root, "NotifyType").ok().flatten(),
        },
        ("Response", c) if c.eq_ignore_ascii_case("DeviceInfo") => Body::DeviceInfo {
            sn,
            device_id,
            name: opt(&root, "DeviceName"),
            manufacturer: opt(&root, "Manufacturer"),
            model: opt(&root, "Model"),
            firmware: opt(&root, "Firmware"),
            channels: num(&root, "Channel")?,
        },
        ("Response", c) if c.eq_ignore_ascii_case("DeviceStatus") => Body::DeviceStatus {
            sn,
            device_id,
            online: root
                .text_of("Online")
                .map(|v| v.eq_ignore_ascii_case("ONLINE")),
            ok: root.text_of("Status").map(|v| v.eq_ignore_ascii_case("OK")),
            recording: root.text_of("Record").map(|v| v.eq_ignore_ascii_case("ON")),
        },
        (r, _) => Body::Other {
            root: r.to_string(),
            cmd_type: cmd,
            device_id,
        },
    })
}

/// A `Query/RecordInfo` body: the footage a channel stored between two instants (UTC ms,
/// written in Beijing time).
pub fn record_info_query(sn: u32, channel_id: &str, start_ms: i64, end_ms: i64) -> String {
    let t = |ms: i64| format_local_time(ms).chars().take(19).collect::<String>();
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>RecordInfo</CmdType>\r\n\
         <SN>{sn}</SN>\r\n<DeviceID>{channel_id}</DeviceID>\r\n<StartTime>{}</StartTime>\r\n\
         <EndTime>{}</EndTime>\r\n<Secrecy>0</Secrecy>\r\n<Type>all</Type>\r\n</Query>\r\n",
        t(start_ms),
        t(end_ms)
    )
}

/// A `Query` body (`Catalog`, `DeviceInfo`, `DeviceStatus`) as GB2312-declared XML.
pub fn query(cmd_type: &str, sn: u32, device_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>{cmd_type}</CmdType>\r\n\
         <SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n</Query>\r\n"
    )
}

/// The `SUBSCRIBE` body asking for MobilePosition every `interval_secs`.
pub fn mobile_position_subscription(sn: u32, device_id: &str, interval_secs: u32) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>MobilePosition</CmdType>\r\n\
         <SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n<Interval>{interval_secs}</Interval>\r\n</Query>\r\n"
    )
}

/// The platform's answer to an `Alarm` notification (the device waits for it).
pub fn alarm_response(sn: u32, device_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Alarm</CmdType>\r\n\
         <SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n<Result>OK</Result>\r\n</Response>\r\n"
    )
}

/// Encode platform XML for the wire (GB18030, which is ASCII for everything the platform writes
/// except names).
pub fn encode(xml: &str) -> Vec<u8> {
    let (bytes, _, _) = encoding_rs::GB18030.encode(xml);
    bytes.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_info_answers_and_media_status_parse() {
        // A page of a RecordInfo answer as Hikvision-style cameras send it (Beijing time).
        let b = parse(
            "<?xml version=\"1.0\" encoding=\"GB2312\"?><Response><CmdType>RecordInfo</CmdType><SN>17</SN>\
             <DeviceID>34020000001310000001</DeviceID><Name>Camera</Name><SumNum>3</SumNum><RecordList Num=\"2\">\
             <Item><DeviceID>34020000001310000001</DeviceID><Name>Camera</Name><FilePath>/sd/1.mp4</FilePath>\
             <StartTime>2026-12-04T10:00:00</StartTime><EndTime>2026-12-04T10:00:20</EndTime><Secrecy>0</Secrecy>\
             <Type>time</Type><FileSize>5242880</FileSize></Item>\
             <Item><DeviceID>34020000001310000001</DeviceID><StartTime>2026-12-04 10:10:00</StartTime>\
             <EndTime>2026-12-04 10:09:00</EndTime></Item></RecordList></Response>",
        )
        .unwrap();
        let Body::RecordInfo { sn, sum, items, .. } = b else {
            panic!("{b:?}")
        };
        assert_eq!((sn, sum), (Some(17), Some(3)));
        // The second item ends before it starts: dropped.
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].start_ms,
            parse_local_time("2026-12-04T10:00:00").unwrap()
        );
        assert_eq!(items[0].end_ms - items[0].start_ms, 20_000);
        assert_eq!(items[0].file_size, Some(5_242_880));
        assert_eq!(items[0].kind.as_deref(), Some("time"));
        // A time that is not one is named.
        let e = parse(
            "<Response><CmdType>RecordInfo</CmdType><DeviceID>1</DeviceID><RecordList>\
             <Item><StartTime>yesterday</StartTime><EndTime>today</EndTime></Item></RecordList></Response>",
        )
        .unwrap_err();
        assert!(e.to_string().contains("StartTime"), "{e}");
        let b = parse(
            "<Notify><CmdType>MediaStatus</CmdType><SN>2</SN><DeviceID>34020000001310000001</DeviceID><NotifyType>121</NotifyType></Notify>",
        )
        .unwrap();
        assert_eq!(
            b,
            Body::MediaStatus {
                device_id: "34020000001310000001".into(),
                notify_type: Some(121)
            }
        );
        // The query carries the range in Beijing time, without fractions.
        let q = record_info_query(
            5,
            "34020000001310000001",
            1_764_813_600_000,
            1_764_817_200_000,
        );
        assert!(
            q.contains("<CmdType>RecordInfo</CmdType>") && q.contains("<SN>5</SN>"),
            "{q}"
        );
        assert!(
            q.contains("<StartTime>2025-12-04T10:00:00</StartTime>"),
            "{q}"
        );
        assert!(q.contains("<EndTime>2025-12-04T11:00:00</EndTime>"), "{q}");
    }

    #[test]
    fn keepalive() {
        let b = parse(
            "<?xml version=\"1.0\"?><Notify><CmdType>Keepalive</CmdType><SN>43</SN>\
             <DeviceID>34020000001320000001</DeviceID><Status>OK</Status></Notify>",
        )
        .unwrap();
        assert_eq!(
            b,
            Body::Keepalive {
                sn: Some(43),
                device_id: "34020000001320000001".into()
            }
        );
    }

    #[test]
    fn mobile_position_with_missing_fields() {
        let b = parse(
            "<Notify><CmdType>MobilePosition</CmdType><DeviceID>34020000001310000001</DeviceID>\
             <Time>2026-11-22T14:07:00</Time><Longitude>121.4737</Longitude><Latitude>31.2304</Latitude></Notify>",
        )
        .unwrap();
        let Body::MobilePosition(p) = b else { panic!() };
        assert_eq!(p.time_ms, parse_local_time("2026-11-22 14:07:00.000"));
        assert_eq!(
            format_local_time(p.time_ms.unwrap()),
            "2026-11-22T14:07:00.000"
        );
        assert_eq!((p.lon, p.lat, p.speed_kmh), (121.4737, 31.2304, None));
        assert_eq!(
            parse("<Notify><CmdType>MobilePosition</CmdType><DeviceID>1</DeviceID><Longitude>x</Longitude><Latitude>1</Latitude></Notify>"),
            Err(ManscdpError::Field { field: "Longitude", value: "x".into() })
        );
        // Without a fix the report is valid but has nothing to plot.
        assert!(matches!(
            parse("<Notify><CmdType>MobilePosition</CmdType><DeviceID>1</DeviceID></Notify>"),
            Ok(Body::Other { .. })
        ));
    }

    #[test]
    fn lenient_but_bounded() {
        // Unescaped ampersand, wrong-case end tag, junk after the root.
        let b = parse(
            "<Response><CmdType>DeviceInfo</CmdType><DeviceID>1</DeviceID>\
             <DeviceName>A&B</DeviceName><Model>X</model></Response>\0\0junk",
        );
        let Ok(Body::DeviceInfo { name, .. }) = b else {
            panic!("{b:?}")
        };
        assert_eq!(name.as_deref(), Some("A&B"));
        let deep = "<a>".repeat(20);
        assert_eq!(parse_tree(&deep), Err(ManscdpError::TooLarge));
        assert_eq!(
            parse("<Notify><SN>1</SN></Notify>"),
            Err(ManscdpError::Missing("CmdType"))
        );
        assert!(matches!(parse("not xml at all"), Err(ManscdpError::Xml(_))));
        assert!(matches!(parse(""), Err(ManscdpError::Xml(_))));
    }

    #[test]
    fn catalog_page() {
        let b = parse(
            "<Response><CmdType>Catalog</CmdType><SN>7</SN><DeviceID>34020000001320000001</DeviceID>\
             <SumNum>2</SumNum><DeviceList Num=\"1\"><Item><DeviceID>34020000001310000001</DeviceID>\
             <Name>通道1</Name><Status>ON</Status></Item><Item><Name>no id</Name></Item></DeviceList></Response>",
        )
        .unwrap();
        let Body::Catalog { sum, items, sn, .. } = b else {
            panic!()
        };
        assert_eq!((sum, sn, items.len()), (Some(2), Some(7), 1));
        assert_eq!(items[0].name.as_deref(), Some("通道1"));
    }

    #[test]
    fn queries_read_back() {
        let q = query("Catalog", 9, "34020000001320000001");
        let t = parse_tree(&q).unwrap();
        assert_eq!((t.name.as_str(), t.text_of("SN")), ("Query", Some("9")));
        let s = mobile_position_subscription(1, "34020000001320000001", 5);
        assert_eq!(parse_tree(&s).unwrap().text_of("Interval"), Some("5"));
        assert_eq!(encode("<a>通道</a>").len(), 11);
    }
}
