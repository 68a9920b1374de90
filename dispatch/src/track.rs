//! Track export: simplification to a point budget, GeoJSON (RFC 7946) and GPX 1.1.

use shouhu_storage::positions::TrackPoint;

use crate::coords::Crs;
use crate::protocol::rfc3339;
use crate::simplify::douglas_peucker;

/// Reduce `pts` to at most `max_points` with Douglas–Peucker, doubling the tolerance from
/// `start_m` until it fits; `tolerance_m` forces one tolerance. Returns the kept points and the
/// tolerance used (None when nothing was removed).
pub fn simplify(
    pts: Vec<TrackPoint>,
    max_points: usize,
    tolerance_m: Option<f64>,
) -> (Vec<TrackPoint>, Option<f64>) {
    let coords: Vec<(f64, f64)> = pts
        .iter()
        .map(|t| (t.position.lat, t.position.lon))
        .collect();
    let pick = |keep: Vec<usize>, pts: Vec<TrackPoint>| -> Vec<TrackPoint> {
        let mut it = keep.into_iter().peekable();
        pts.into_iter()
            .enumerate()
            .filter_map(|(i, p)| {
                if it.peek() == Some(&i) {
                    it.next();
                    Some(p)
                } else {
                    None
                }
            })
            .collect()
    };
    if let Some(t) = tolerance_m.filter(|t| *t > 0.0) {
        let keep = douglas_peucker(&coords, t);
        return (pick(keep, pts), Some(t));
    }
    if pts.len() <= max_points.max(2) {
        return (pts, None);
    }
    let mut t = 2.0;
    loop {
        let keep = douglas_peucker(&coords, t);
        if keep.len() <= max_points || t > 100_000.0 {
            return (pick(keep, pts), Some(t));
        }
        t *= 2.0;
    }
}

/// A GeoJSON FeatureCollection with one LineString (`[lon, lat]` in `crs`; RFC 7946 means
/// WGS-84, other systems are for Chinese base maps and say so in `properties.crs`) and the
/// device times in `properties.times`.
pub fn to_geojson(unit_id: &str, name: &str, pts: &[TrackPoint], crs: Crs) -> serde_json::Value {
    let coords: Vec<serde_json::Value> = pts
        .iter()
        .map(|t| {
            let (la, lo) = crs.from_wgs84(t.position.lat, t.position.lon);
            serde_json::json!([lo, la])
        })
        .collect();
    let times: Vec<String> = pts.iter().map(|t| rfc3339(t.position.time_ms)).collect();
    let speeds: Vec<Option<f64>> = pts.iter().map(|t| t.position.speed_kmh).collect();
    serde_json::json!({
        "type": "FeatureCollection",
        "features": [{
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"unit_id": unit_id, "name": name, "times": times, "speeds_kmh": speeds,
                           "crs": format!("{crs:?}").to_lowercase()},
        }],
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// GPX 1.1 (always WGS-84, as the format requires).
pub fn to_gpx(name: &str, pts: &[TrackPoint]) -> String {
    let mut s = String::with_capacity(200 + pts.len() * 100);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(
        "<gpx version=\"1.1\" creator=\"Shouhu\" xmlns=\"http://www.topografix.com/GPX/1/1\">\n",
    );
    s.push_str(&format!("<trk><name>{}</name><trkseg>\n", xml_escape(name)));
    for t in pts {
        let p = &t.position;
        s.push_str(&format!(
            "<trkpt lat=\"{:.7}\" lon=\"{:.7}\">",
            p.lat, p.lon
        ));
        if let Some(a) = p.altitude_m {
            s.push_str(&format!("<ele>{a}</ele>"));
        }
        s.push_str(&format!("<time>{}</time></trkpt>\n", rfc3339(p.time_ms)));
    }
    s.push_str("</trkseg></trk>\n</gpx>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use shouhu_storage::model::{Position, PositionSource};

    fn tp(i: i64, lat: f64, lon: f64) -> TrackPoint {
        TrackPoint {
            position: Position {
                unit_id: "u".into(),
                time_ms: 1_790_000_000_000 + i * 1000,
                lat,
                lon,
                speed_kmh: Some(10.0),
                heading_deg: None,
                altitude_m: Some(4.0),
                accuracy_m: None,
                source: PositionSource::Jt808,
                alarm_flags: 0,
            },
            flags: 0,
            received_at_ms: 0,
        }
    }

    #[test]
    fn simplifies_to_the_budget() {
        let pts: Vec<TrackPoint> = (0..10_000)
            .map(|i| {
                tp(
                    i,
                    31.2 + (i as f64 * 0.01).sin() * 0.001,
                    121.4 + i as f64 * 1e-5,
                )
            })
            .collect();
        let (kept, tol) = simplify(pts, 500, None);
        assert!(kept.len() <= 500 && kept.len() >= 2, "{}", kept.len());
        assert!(tol.is_some());
        assert!(kept
            .windows(2)
            .all(|w| w[0].position.time_ms < w[1].position.time_ms));
        let few: Vec<TrackPoint> = (0..10)
            .map(|i| tp(i, 31.2, 121.4 + i as f64 * 1e-3))
            .collect();
        assert_eq!(simplify(few, 500, None).0.len(), 10);
    }

    #[test]
    fn exports() {
        let pts = vec![tp(0, 31.2, 121.4), tp(1, 31.201, 121.401)];
        let g = to_geojson("u", "沪A", &pts, Crs::Wgs84);
        assert_eq!(g["features"][0]["geometry"]["coordinates"][1][0], 121.401);
        assert_eq!(
            g["features"][0]["properties"]["times"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let x = to_gpx("a<b", &pts);
        assert!(x.contains("<name>a&lt;b</name>"));
        assert!(x.contains("<trkpt lat=\"31.2010000\" lon=\"121.4010000\"><ele>4</ele><time>"));
    }
}
