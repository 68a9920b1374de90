//! The SDP GB/T 28181 uses to set up a live stream (§9.2): the platform's offer (`s=Play`, one
//! `m=video` line with PS on payload type 96, `y=` SSRC) and the device's answer. Sans-IO.
//!
//! Transports: RTP over UDP; RTP over TCP with RFC 4571 framing, passive (`a=setup:passive`:
//! the platform listens, the device connects) or active (`a=setup:active`: the platform
//! connects to the port the device answers with).

use std::net::IpAddr;

/// How media travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaTransport {
    /// RTP/AVP over UDP.
    Udp,
    /// TCP/RTP/AVP, the platform listens (`a=setup:passive` in the offer).
    TcpPassive,
    /// TCP/RTP/AVP, the platform connects (`a=setup:active` in the offer).
    TcpActive,
}

impl MediaTransport {
    /// Config token: `udp`, `tcp-passive`, `tcp-active`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "udp" => Some(Self::Udp),
            "tcp-passive" => Some(Self::TcpPassive),
            "tcp-active" => Some(Self::TcpActive),
            _ => None,
        }
    }
}

/// The platform's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Platform id (the `o=` user).
    pub platform_id: String,
    /// Where the device should send media.
    pub ip: IpAddr,
    /// RTP port (UDP, or the TCP port the platform listens on; 9 for active TCP).
    pub port: u16,
    /// Transport.
    pub transport: MediaTransport,
    /// The 10-digit SSRC the platform expects (`y=`).
    pub ssrc: String,
    /// A download of stored footage instead of the live picture.
    pub download: Option<Download>,
}

/// A download of footage stored on the device (§9.8: `s=Download`, `u=`, `t=`,
/// `a=downloadspeed:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The channel whose footage it is.
    pub channel_id: String,
    /// From, Unix seconds.
    pub start_s: i64,
    /// To, Unix seconds.
    pub end_s: i64,
    /// Times real time the device is asked to send (1–4 in the standard's examples).
    pub speed: u32,
}

impl Offer {
    /// The SDP text.
    pub fn to_sdp(&self) -> String {
        let ipv = if self.ip.is_ipv6() { "IP6" } else { "IP4" };
        let proto = match self.transport {
            MediaTransport::Udp => "RTP/AVP",
            _ => "TCP/RTP/AVP",
        };
        let (session, uri, times) = match &self.download {
            None => ("Play".to_string(), String::new(), "0 0".to_string()),
            Some(d) => (
                "Download".to_string(),
                format!("u={}:0\r\n", d.channel_id),
                format!("{} {}", d.start_s, d.end_s),
            ),
        };
        let mut s = format!(
            "v=0\r\no={} 0 0 IN {ipv} {}\r\ns={session}\r\n{uri}c=IN {ipv} {}\r\nt={times}\r\nm=video {} {proto} 96 98 97\r\n\
             a=recvonly\r\na=rtpmap:96 PS/90000\r\na=rtpmap:98 H264/90000\r\na=rtpmap:97 MPEG4/90000\r\n",
            self.platform_id, self.ip, self.ip, self.port
        );
        if let Some(d) = &self.download {
            s.push_str(&format!("a=downloadspeed:{}\r\n", d.speed.max(1)));
        }
        match self.transport {
            MediaTransport::Udp => {}
            MediaTransport::TcpPassive => s.push_str("a=setup:passive\r\na=connection:new\r\n"),
            MediaTransport::TcpActive => s.push_str("a=setup:active\r\na=connection:new\r\n"),
        }
        s.push_str(&format!("y={}\r\n", self.ssrc));
        s
    }
}

/// What an SDP (offer or answer) says about its one video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `c=` address (session or media level).
    pub ip: Option<IpAddr>,
    /// `m=video` port.
    pub port: u16,
    /// Transport from the `m=` protocol and `a=setup`.
    pub transport: MediaTransport,
    /// `y=` SSRC, when present.
    pub ssrc: Option<String>,
    /// `s=` (`Play`, `Playback`, `Download`, `Talk`).
    pub session: String,
    /// Payload types offered or chosen.
    pub payload_types: Vec<u8>,
}

/// Why an SDP is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// No `m=video` line.
    #[error("SDP has no m=video line")]
    NoVideo,
    /// A line cannot be read.
    #[error("SDP line {0:?} cannot be read")]
    Line(String),
}

/// Read an SDP (lenient about line ends and unknown lines).
pub fn parse(text: &str) -> Result<Media, SdpError> {
    let mut ip = None;
    let mut media: Option<(u16, String, Vec<u8>)> = None;
    let mut setup = None;
    let mut ssrc = None;
    let mut session = String::new();
    for line in text.lines().map(str::trim) {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "c" => {
                let addr = v
                    .split_whitespace()
                    .nth(2)
                    .ok_or_else(|| SdpError::Line(line.into()))?;
                let addr = addr.split('/').next().unwrap_or(addr);
                ip = Some(
                    addr.parse()
                        .map_err(|_| SdpError::Line(line.chars().take(60).collect()))?,
                );
            }
            "m" if v.starts_with("video") => {
                let mut it = v.split_whitespace().skip(1);
                let port = it
                    .next()
                    .and_then(|p| p.split('/').next()?.parse().ok())
                    .ok_or_else(|| SdpError::Line(line.chars().take(60).collect()))?;
                let proto = it.next().unwrap_or("RTP/AVP").to_ascii_uppercase();
                let pts = it.filter_map(|p| p.parse().ok()).collect();
                media = Some((port, proto, pts));
            }
            "a" if v.starts_with("setup:") => setup = Some(v[6..].trim().to_ascii_lowercase()),
            "y" => ssrc = Some(v.trim().to_string()),
            "s" => session = v.trim().to_string(),
            _ => {}
        }
    }
    let (port, proto, payload_types) = media.ok_or(SdpError::NoVideo)?;
    let transport = if proto.starts_with("TCP") {
        match setup.as_deref() {
            Some("active") => MediaTransport::TcpActive,
            _ => MediaTransport::TcpPassive,
        }
    } else {
        MediaTransport::Udp
    };
    Ok(Media {
        ip,
        port,
        transport,
        ssrc,
        session,
        payload_types,
    })
}

/// The SSRC of a playback or download: `1` (history) + the domain's digits 4–8 + a 4-digit
/// sequence (GB/T 28181 附录 F).
pub fn history_ssrc(domain: &str, seq: u32) -> String {
    let mid: String = domain.chars().skip(3).take(5).collect();
    format!("1{:0>5}{:04}", mid, seq % 10_000)
}

/// The SSRC a platform uses for a live stream: `0` (real time) + the domain's digits 4–8 + a
/// 4-digit sequence (GB/T 28181 附录 F).
pub fn live_ssrc(domain: &str, seq: u32) -> String {
    let mid: String = domain.chars().skip(3).take(5).collect();
    format!("0{:0>5}{:04}", mid, seq % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_offers_carry_the_range_and_speed() {
        let o = Offer {
            platform_id: "34020000002000000001".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port: 30002,
            transport: MediaTransport::Udp,
            ssrc: history_ssrc("3402000000", 8),
            download: Some(Download {
                channel_id: "34020000001310000001".into(),
                start_s: 1_764_813_600,
                end_s: 1_764_813_620,
                speed: 4,
            }),
        };
        assert_eq!(o.ssrc, "1200000008");
        let sdp = o.to_sdp();
        for line in [
            "s=Download",
            "u=34020000001310000001:0",
            "t=1764813600 1764813620",
            "a=downloadspeed:4",
            "y=1200000008",
        ] {
            assert!(sdp.lines().any(|l| l == line), "{line} in {sdp}");
        }
        let m = parse(&sdp).unwrap();
        assert_eq!((m.session.as_str(), m.port), ("Download", 30002));
    }

    #[test]
    fn offer_round_trips_and_device_answers_parse() {
        let o = Offer {
            platform_id: "34020000002000000001".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port: 30000,
            transport: MediaTransport::Udp,
            ssrc: live_ssrc("3402000000", 7),
            download: None,
        };
        assert_eq!(o.ssrc, "0200000007");
        let m = parse(&o.to_sdp()).unwrap();
        assert_eq!(
            (m.port, m.transport, m.ssrc.as_deref(), m.session.as_str()),
            (30000, MediaTransport::Udp, Some("0200000007"), "Play")
        );
        assert_eq!(m.payload_types, [96, 98, 97]);
        // A Hikvision-style answer: PS only, sendonly, TCP active from our side means the
        // device listens.
        let ans = "v=0\no=34020000001320000001 0 0 IN IP4 192.168.1.64\ns=Play\nc=IN IP4 192.168.1.64\nt=0 0\n\
                   m=video 15060 TCP/RTP/AVP 96\na=sendonly\na=rtpmap:96 PS/90000\na=setup:passive\ny=0200000007\nf=\n";
        let m = parse(ans).unwrap();
        assert_eq!(
            (m.ip, m.port, m.transport),
            (
                Some("192.168.1.64".parse().unwrap()),
                15060,
                MediaTransport::TcpPassive
            )
        );
        assert_eq!(parse("v=0\ns=Play\n"), Err(SdpError::NoVideo));
        assert!(matches!(
            parse("c=IN IP4 nonsense\nm=video 1 RTP/AVP 96\n"),
            Err(SdpError::Line(_))
        ));
    }
}
