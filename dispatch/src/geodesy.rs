//! Distances on the Earth and a local metric projection for the spatial index.

/// Mean Earth radius, metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance between two WGS-84 points, metres.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// An equirectangular projection to metres around a reference latitude. Within a city it is
/// accurate to a fraction of a percent, which is enough for an R-tree that finds candidates;
/// final distances are re-ranked by [`haversine_m`].
#[derive(Debug, Clone, Copy)]
pub struct LocalProjection {
    kx: f64,
    ky: f64,
}

impl LocalProjection {
    /// A projection true at `ref_lat` degrees.
    pub fn new(ref_lat: f64) -> Self {
        let ky = EARTH_RADIUS_M.to_radians();
        Self {
            kx: ky * ref_lat.to_radians().cos(),
            ky,
        }
    }

    /// `(lat, lon)` → `[x, y]` metres.
    pub fn project(&self, lat: f64, lon: f64) -> [f64; 2] {
        [lon * self.kx, lat * self.ky]
    }

    /// `[x, y]` metres → `(lat, lon)`.
    pub fn unproject(&self, p: [f64; 2]) -> (f64, f64) {
        (p[1] / self.ky, p[0] / self.kx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_known_distance() {
        // People's Square to the Oriental Pearl Tower, about 2.9 km.
        let d = haversine_m(31.2304, 121.4737, 31.2397, 121.4998);
        assert!((2_600.0..3_000.0).contains(&d), "{d}");
        assert!(haversine_m(31.0, 121.0, 31.0, 121.0).abs() < 1e-9);
    }

    #[test]
    fn projection_round_trips_and_scales() {
        let p = LocalProjection::new(31.2);
        let a = p.project(31.2, 121.4);
        let b = p.project(31.2, 121.41);
        let metric = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
        let true_m = haversine_m(31.2, 121.4, 31.2, 121.41);
        assert!((metric - true_m).abs() / true_m < 0.005);
        let (lat, lon) = p.unproject(a);
        assert!((lat - 31.2).abs() < 1e-12 && (lon - 121.4).abs() < 1e-12);
    }
}
