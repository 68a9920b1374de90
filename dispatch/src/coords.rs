//! WGS-84 ↔ GCJ-02 ↔ BD-09 for Chinese base maps.
//!
//! Devices report WGS-84 and that is what is stored. Gaode and Tencent maps draw in GCJ-02, Baidu
//! in BD-09; the API converts on request. The forward GCJ-02 transform is the public formula
//! (Krasovsky ellipsoid, `a = 6378245.0`, `ee = 0.00669342162296594323`); its inverse has no
//! closed form and is found by fixed-point iteration to well under a millimetre. Points outside
//! mainland China — abroad, Hong Kong, Macau, Taiwan — are not shifted ([`in_mainland`]).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

const A: f64 = 6_378_245.0;
const EE: f64 = 0.006_693_421_622_965_943;
const X_PI: f64 = PI * 3000.0 / 180.0;

/// A coordinate reference system a client can ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crs {
    /// WGS-84 (GNSS, OpenStreetMap, storage).
    #[default]
    Wgs84,
    /// GCJ-02 (Gaode, Tencent).
    Gcj02,
    /// BD-09 (Baidu).
    Bd09,
}

impl Crs {
    /// All systems, in index order.
    pub const ALL: [Crs; 3] = [Crs::Wgs84, Crs::Gcj02, Crs::Bd09];

    /// Index into per-system caches.
    pub fn index(self) -> usize {
        match self {
            Crs::Wgs84 => 0,
            Crs::Gcj02 => 1,
            Crs::Bd09 => 2,
        }
    }

    /// Parse `wgs84`, `gcj02` or `bd09` (case-insensitive).
    pub fn parse(s: &str) -> Option<Crs> {
        match s.to_ascii_lowercase().as_str() {
            "wgs84" | "wgs-84" => Some(Crs::Wgs84),
            "gcj02" | "gcj-02" => Some(Crs::Gcj02),
            "bd09" | "bd-09" => Some(Crs::Bd09),
            _ => None,
        }
    }

    /// `(lat, lon)` in WGS-84 → this system.
    pub fn from_wgs84(self, lat: f64, lon: f64) -> (f64, f64) {
        match self {
            Crs::Wgs84 => (lat, lon),
            Crs::Gcj02 => wgs84_to_gcj02(lat, lon),
            Crs::Bd09 => {
                let (la, lo) = wgs84_to_gcj02(lat, lon);
                gcj02_to_bd09(la, lo)
            }
        }
    }

    /// `(lat, lon)` in this system → WGS-84.
    pub fn to_wgs84(self, lat: f64, lon: f64) -> (f64, f64) {
        match self {
            Crs::Wgs84 => (lat, lon),
            Crs::Gcj02 => gcj02_to_wgs84(lat, lon),
            Crs::Bd09 => {
                let (la, lo) = bd09_to_gcj02(lat, lon);
                gcj02_to_wgs84(la, lo)
            }
        }
    }
}

/// Rough outlines (lon/lat boxes) of the areas inside the public China bounding box that are
/// not shifted: Hong Kong, Macau and Taiwan. Generous on the sea side, tight on the land border.
const EXCLUDED: [(f64, f64, f64, f64); 4] = [
    // Hong Kong: south of the Shenzhen river (≈22.51° N at Lo Wu, 22.56° N at Sha Tau Kok).
    (113.82, 22.13, 114.45, 22.505),
    // Macau (peninsula, Taipa, Coloane), south of Gongbei.
    (113.52, 22.08, 113.60, 22.215),
    // Taiwan main island and Penghu.
    (119.30, 21.85, 122.10, 25.35),
    // Kinmen and Matsu, off the Fujian coast.
    (118.20, 24.35, 118.50, 24.55),
];

/// Whether a WGS-84 point lies in mainland China, where GCJ-02 applies.
pub fn in_mainland(lat: f64, lon: f64) -> bool {
    if !(72.004..=137.8347).contains(&lon) || !(0.8293..=55.8271).contains(&lat) {
        return false;
    }
    !EXCLUDED
        .iter()
        .any(|&(w, s, e, n)| (w..=e).contains(&lon) && (s..=n).contains(&lat))
}

fn transform_lat(x: f64, y: f64) -> f64 {
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn transform_lon(x: f64, y: f64) -> f64 {
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

fn gcj_offset(lat: f64, lon: f64) -> (f64, f64) {
    let dlat = transform_lat(lon - 105.0, lat - 35.0);
    let dlon = transform_lon(lon - 105.0, lat - 35.0);
    let radlat = lat / 180.0 * PI;
    let magic = 1.0 - EE * radlat.sin() * radlat.sin();
    let sqrtmagic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrtmagic) * PI);
    let dlon = (dlon * 180.0) / (A / sqrtmagic * radlat.cos() * PI);
    (dlat, dlon)
}

/// WGS-84 → GCJ-02 (unchanged outside mainland China).
pub fn wgs84_to_gcj02(lat: f64, lon: f64) -> (f64, f64) {
    if !in_mainland(lat, lon) {
        return (lat, lon);
    }
    let (dlat, dlon) = gcj_offset(lat, lon);
    (lat + dlat, lon + dlon)
}

/// GCJ-02 → WGS-84 by iteration (error < 1e-9°, about 0.1 mm).
pub fn gcj02_to_wgs84(lat: f64, lon: f64) -> (f64, f64) {
    if !in_mainland(lat, lon) {
        return (lat, lon);
    }
    let (mut wlat, mut wlon) = (lat, lon);
    for _ in 0..30 {
        let (glat, glon) = wgs84_to_gcj02(wlat, wlon);
        let (elat, elon) = (glat - lat, glon - lon);
        wlat -= elat;
        wlon -= elon;
        if elat.abs() < 1e-10 && elon.abs() < 1e-10 {
            break;
        }
    }
    (wlat, wlon)
}

/// GCJ-02 → BD-09.
pub fn gcj02_to_bd09(lat: f64, lon: f64) -> (f64, f64) {
    let z = (lon * lon + lat * lat).sqrt() + 0.00002 * (lat * X_PI).sin();
    let theta = lat.atan2(lon) + 0.000003 * (lon * X_PI).cos();
    (z * theta.sin() + 0.006, z * theta.cos() + 0.0065)
}

/// BD-09 → GCJ-02.
pub fn bd09_to_gcj02(lat: f64, lon: f64) -> (f64, f64) {
    let x = lon - 0.0065;
    let y = lat - 0.006;
    let z = (x * x + y * y).sqrt() - 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) - 0.000003 * (x * X_PI).cos();
    (z * theta.sin(), z * theta.cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64), eps: f64) -> bool {
        (a.0 - b.0).abs() < eps && (a.1 - b.1).abs() < eps
    }

    #[test]
    fn published_reference_point() {
        // DOMAIN.md: WGS (116.404, 39.915) → GCJ (116.41024449916938, 39.91640428150164).
        let (lat, lon) = wgs84_to_gcj02(39.915, 116.404);
        assert!((lon - 116.410_244_499_169_38).abs() < 1e-9, "{lon}");
        assert!((lat - 39.916_404_281_501_64).abs() < 1e-9, "{lat}");
    }

    #[test]
    fn inverse_round_trips_in_shanghai() {
        for (lat, lon) in [(31.2304, 121.4737), (31.0, 121.2), (31.4, 121.9)] {
            let g = wgs84_to_gcj02(lat, lon);
            assert!(!close(g, (lat, lon), 1e-4), "GCJ-02 must shift Shanghai");
            assert!(close(gcj02_to_wgs84(g.0, g.1), (lat, lon), 1e-8));
            let b = Crs::Bd09.from_wgs84(lat, lon);
            // The public BD-09 inverse is approximate (≈ 1e-6°, a decimetre).
            assert!(close(Crs::Bd09.to_wgs84(b.0, b.1), (lat, lon), 1e-5));
        }
    }

    #[test]
    fn bd09_offset_is_about_six_thousandths() {
        let (lat, lon) = gcj02_to_bd09(31.2304, 121.4737);
        assert!((lat - 31.2304 - 0.006).abs() < 0.002);
        assert!((lon - 121.4737 - 0.0065).abs() < 0.002);
        assert!(close(bd09_to_gcj02(lat, lon), (31.2304, 121.4737), 1e-5));
    }

    #[test]
    fn not_shifted_outside_the_mainland() {
        for (lat, lon) in [
            (22.2783, 114.1747), // Hong Kong, Wan Chai
            (22.1987, 113.5439), // Macau
            (25.0330, 121.5654), // Taipei
            (35.6762, 139.6503), // Tokyo
            (48.8566, 2.3522),   // Paris
        ] {
            assert!(!in_mainland(lat, lon), "{lat},{lon}");
            assert_eq!(wgs84_to_gcj02(lat, lon), (lat, lon));
            assert_eq!(gcj02_to_wgs84(lat, lon), (lat, lon));
        }
        // Shenzhen (Futian) and Zhuhai (Gongbei), just across the borders, are shifted.
        assert!(in_mainland(22.5431, 114.0579));
        assert!(in_mainland(22.2300, 113.5460));
    }

    #[test]
    fn parse_names() {
        assert_eq!(Crs::parse("GCJ02"), Some(Crs::Gcj02));
        assert_eq!(Crs::parse("bd-09"), Some(Crs::Bd09));
        assert_eq!(Crs::parse("utm"), None);
    }
}
