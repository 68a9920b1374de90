//! The GB/T 28181 platform state machine driven with vendor-style captures from `testdata/`:
//! registration with digest, keepalives, positions, alarms, catalog pages, retransmissions,
//! rate limiting and time-outs. No sockets; time is simulated.

use std::net::SocketAddr;

use shouhu_media::gb28181::platform::{
    DeviceUpdate, Output, Peer, Platform, PlatformConfig, Transport,
};
use shouhu_media::gb28181::{Now, Secret};
use shouhu_media::model::{PositionSource, UnitEvent};
use shouhu_media::sip::digest::{self, Algorithm, Credentials};
use shouhu_media::sip::{parse_datagram, Message};

const REALM: &str = "3402000000";
const PASSWORD: &str = "12345678";
const HIK: &str = "34020000001320000001";

fn fixture(name: &str) -> Message {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap();
    parse_datagram(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn peer(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse::<SocketAddr>().unwrap(),
    }
}

fn now(s: u64) -> Now {
    Now {
        mono_ms: s * 1000,
        utc_ms: 1_795_000_000_000 + s as i64 * 1000,
    }
}

fn platform() -> Platform {
    let cfg = PlatformConfig {
        advertised: "10.0.0.1:5060".into(),
        ..Default::default()
    };
    let mut p = Platform::new(cfg, [9; 32], [8; 32]);
    for id in [HIK, "34020000001320000002", "34020000001320000003"] {
        p.set_device(id, Secret::from_password(id, REALM, PASSWORD));
    }
    p
}

fn sent(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Some(parse_datagram(bytes).unwrap()),
            _ => None,
        })
        .collect()
}

fn status_of(out: &[Output]) -> Vec<u16> {
    sent(out).iter().filter_map(Message::status).collect()
}

fn authorize(req: &Message, challenge: &str, password: &str) -> Message {
    let params = digest::parse_params(challenge.strip_prefix("Digest ").unwrap()).unwrap();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let alg = Algorithm::from_token(&get("algorithm").unwrap()).unwrap();
    let user = req.from().unwrap().uri.user.unwrap();
    let mut c = Credentials {
        username: user.clone(),
        realm: get("realm").unwrap(),
        nonce: get("nonce").unwrap(),
        uri: format!("sip:34020000002000000001@{REALM}"),
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        cnonce: Some("c0ffee".into()),
        algorithm: Some(alg.token().into()),
        ..Default::default()
    };
    let ha1 = digest::ha1(alg, &user, &c.realm, password);
    c.response = digest::expected_response(&c, alg, &ha1, "REGISTER");
    let mut m = req.clone();
    let via = m
        .header("Via")
        .unwrap()
        .replace("branch=", "branch=z9hG4bKauth");
    m.set("Via", via);
    let (n, _) = m.cseq().unwrap();
    m.set("CSeq", format!("{} REGISTER", n + 1));
    m.push(
        "Authorization",
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
            c.username, c.realm, c.nonce, c.uri, c.response, alg.token()
        ),
    );
    parse_datagram(&m.to_bytes()).unwrap()
}

/// Register a fixture's device; returns the outputs of the successful REGISTER.
fn register(p: &mut Platform, name: &str, at: &str, t: u64) -> Vec<Output> {
    let req = fixture(name);
    p.on_message(peer(at), req.clone(), now(t));
    let out = p.take_outputs();
    let challenge = sent(&out)[0].clone();
    assert_eq!(challenge.status(), Some(401), "{name}");
    let auth = authorize(
        &req,
        challenge.header("WWW-Authenticate").unwrap(),
        PASSWORD,
    );
    p.on_message(peer(at), auth, now(t));
    p.take_outputs()
}

#[test]
fn vendors_register_with_digest() {
    let mut p = platform();
    for (name, at) in [
        ("hikvision_register.txt", "192.168.1.64:5060"),
        ("dahua_register.txt", "192.168.1.108:5060"),
        ("recorder_register_lowercase.txt", "10.20.30.40:5061"),
    ] {
        let out = register(&mut p, name, at, 1);
        let msgs = sent(&out);
        let ok = &msgs[0];
        assert_eq!(ok.status(), Some(200), "{name}");
        assert!(ok.header("Date").unwrap().starts_with("2026-"), "{name}");
        assert_eq!(ok.header("Expires"), Some("3600"));
        // The platform then asks for the catalog and device info and subscribes to positions.
        let asked: Vec<&str> = msgs[1..].iter().filter_map(Message::method).collect();
        assert_eq!(asked, ["MESSAGE", "MESSAGE", "SUBSCRIBE"], "{name}");
        assert!(msgs[1].body_text().contains("<CmdType>Catalog</CmdType>"));
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event(UnitEvent::Online {
                source: PositionSource::Gb28181,
                ..
            })
        )));
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Device(DeviceUpdate::Registered { .. }))));
    }
    assert_eq!(p.registered().count(), 3);
}

#[test]
fn wrong_password_unknown_device_and_bad_requests() {
    let mut p = platform();
    let req = fixture("hikvision_register.txt");
    p.on_message(peer("192.168.1.64:5060"), req.clone(), now(1));
    let ch = sent(&p.take_outputs())[0].clone();
    let bad = authorize(&req, ch.header("WWW-Authenticate").unwrap(), "wrong");
    p.on_message(peer("192.168.1.64:5060"), bad, now(1));
    let out = p.take_outputs();
    assert_eq!(status_of(&out), [403]);
    assert!(p.device(HIK).is_none());
    // Unknown device id.
    let mut p = Platform::new(PlatformConfig::default(), [9; 32], [8; 32]);
    p.on_message(peer("192.168.1.64:5060"), req.clone(), now(1));
    let r = sent(&p.take_outputs())[0].clone();
    assert_eq!(r.status(), Some(403));
    // A keepalive from a device that is not registered is refused so it registers again.
    let mut p = platform();
    p.on_message(
        peer("192.168.1.64:5060"),
        fixture("hikvision_keepalive_gb2312.bin"),
        now(1),
    );
    assert_eq!(status_of(&p.take_outputs()), [403]);
    // A request whose headers can be read but break a rule gets 400 with the reason.
    let raw = std::fs::read(format!(
        "{}/testdata/hikvision_register.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let raw = String::from_utf8(raw)
        .unwrap()
        .replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
    let err = parse_datagram(raw.as_bytes()).unwrap_err();
    p.on_parse_error(peer("192.168.1.64:5060"), err, now(1));
    let r = sent(&p.take_outputs())[0].clone();
    assert_eq!(r.status(), Some(400));
    assert!(
        matches!(&r.start, shouhu_media::sip::StartLine::Response { reason, .. } if reason.contains("CSeq method"))
    );
}

#[test]
fn keepalive_position_alarm_catalog() {
    let mut p = platform();
    let at = "192.168.1.64:5060";
    register(&mut p, "hikvision_register.txt", at, 1);
    p.on_message(peer(at), fixture("hikvision_keepalive_gb2312.bin"), now(2));
    assert_eq!(status_of(&p.take_outputs()), [200]);

    p.on_message(
        peer(at),
        fixture("recorder_mobileposition_gb2312.bin"),
        now(3),
    );
    let out = p.take_outputs();
    let pos = out
        .iter()
        .find_map(|o| match o {
            Output::Event(UnitEvent::Position {
                position,
                live: true,
            }) => Some(position.clone()),
            _ => None,
        })
        .unwrap();
    // The body's DeviceID is the channel; the position belongs to the registered device.
    assert_eq!(pos.unit_id, HIK);
    assert_eq!(
        (pos.lon, pos.lat, pos.speed_kmh, pos.heading_deg),
        (121.4737, 31.2304, Some(12.5), Some(90.0))
    );
    // 14:07 Beijing time is 06:07 UTC.
    assert_eq!(pos.time_ms % 86_400_000, (6 * 3600 + 7 * 60) * 1000);

    p.on_message(peer(at), fixture("recorder_alarm_sos_gb2312.bin"), now(4));
    let out = p.take_outputs();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(UnitEvent::Sos { unit_id, .. }) if unit_id == HIK)));
    let msgs = sent(&out);
    assert_eq!(msgs[0].status(), Some(200));
    assert!(
        msgs[1].body_text().contains("<CmdType>Alarm</CmdType>"),
        "the alarm is answered with a Response"
    );

    p.on_message(
        peer(at),
        fixture("hikvision_catalog_page1_gb2312.bin"),
        now(5),
    );
    assert!(!p
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Device(DeviceUpdate::Catalog { .. }))));
    p.on_message(
        peer(at),
        fixture("hikvision_catalog_page2_gb2312.bin"),
        now(5),
    );
    let out = p.take_outputs();
    let items = out
        .iter()
        .find_map(|o| match o {
            Output::Device(DeviceUpdate::Catalog { items, .. }) => Some(items.clone()),
            _ => None,
        })
        .unwrap();
    let names: Vec<_> = items.iter().map(|i| i.name.clone().unwrap()).collect();
    assert_eq!(names, ["前置摄像头", "执法记录仪-音频", "红外通道"]);
}

#[test]
fn retransmissions_are_absorbed_and_requests_retransmitted() {
    let mut p = platform();
    let at = "192.168.1.64:5060";
    register(&mut p, "hikvision_register.txt", at, 1);
    let ka = fixture("hikvision_keepalive_gb2312.bin");
    p.on_message(peer(at), ka.clone(), now(2));
    let first = p.take_outputs();
    p.on_message(peer(at), ka, now(2));
    let again = p.take_outputs();
    assert_eq!(
        first, again,
        "a retransmitted request gets the same bytes back"
    );
    // The catalog query sent at registration is retransmitted until answered.
    p.on_tick(Now {
        mono_ms: 1500,
        utc_ms: now(1).utc_ms + 500,
    });
    let mut resent: Vec<_> = sent(&p.take_outputs())
        .iter()
        .filter_map(|m| m.method().map(str::to_string))
        .collect();
    resent.sort();
    assert_eq!(resent, ["MESSAGE", "MESSAGE", "SUBSCRIBE"]);
}

#[test]
fn missed_keepalives_then_expiry() {
    let mut p = platform();
    let at = "192.168.1.64:5060";
    register(&mut p, "hikvision_register.txt", at, 0);
    p.on_tick(now(179));
    assert!(!p
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Event(UnitEvent::Offline { .. }))));
    p.on_tick(now(180));
    let out = p.take_outputs();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(UnitEvent::Offline { .. }))));
    assert!(!p.device(HIK).unwrap().online);
    // A keepalive brings it back.
    p.on_message(
        peer(at),
        fixture("hikvision_keepalive_gb2312.bin"),
        now(200),
    );
    assert!(p
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Event(UnitEvent::Online { .. }))));
    p.on_tick(now(3601));
    assert!(p
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::Device(DeviceUpdate::Unregistered { .. }))));
    assert!(p.device(HIK).is_none());
}

#[test]
fn a_flooding_device_is_limited_alone() {
    let mut p = platform();
    register(&mut p, "hikvision_register.txt", "192.168.1.64:5060", 1);
    register(&mut p, "dahua_register.txt", "192.168.1.64:5070", 1);
    let ka = fixture("hikvision_keepalive_gb2312.bin");
    let mut refused = 0;
    for i in 0..300 {
        let mut m = ka.clone();
        m.set(
            "Via",
            format!("SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bKflood{i}"),
        );
        p.on_message(peer("192.168.1.64:5060"), m, now(2));
        refused += status_of(&p.take_outputs())
            .iter()
            .filter(|s| **s == 503)
            .count();
    }
    assert!(refused >= 150, "{refused}");
    // The other device behind the same address is served.
    let dahua_ka = {
        let raw = std::fs::read(format!(
            "{}/testdata/hikvision_keepalive_gb2312.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut m = parse_datagram(&raw).unwrap();
        m.set("From", "<sip:34020000001320000002@3402000000>;tag=9");
        m.set("Via", "SIP/2.0/UDP 192.168.1.64:5070;branch=z9hG4bKdahua");
        m
    };
    p.on_message(peer("192.168.1.64:5070"), dahua_ka, now(2));
    assert_eq!(status_of(&p.take_outputs()), [200]);
}
