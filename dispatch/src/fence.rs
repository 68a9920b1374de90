//! Geofence shapes: polygons (GeoJSON Polygon / MultiPolygon, WGS-84) and circles.

use geo::{BoundingRect, Contains, Coord, LineString, MultiPolygon, Point, Polygon};
use serde_json::Value;

use crate::geodesy::haversine_m;

/// Most vertices a drawn or imported fence may have.
pub const MAX_VERTICES: usize = 20_000;

/// What can be wrong with a fence geometry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FenceError {
    /// Not JSON, or not a GeoJSON Polygon / MultiPolygon.
    #[error("geometry: {0}")]
    Geometry(String),
    /// A circle without a positive radius or with a centre off the Earth.
    #[error("circle: {0}")]
    Circle(String),
}

/// The shape of a geofence.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Within `radius_m` of a point.
    Circle {
        /// Centre latitude.
        lat: f64,
        /// Centre longitude.
        lon: f64,
        /// Radius, metres.
        radius_m: f64,
    },
    /// Inside a (multi)polygon; coordinates are `x = lon, y = lat`.
    Area(MultiPolygon<f64>),
}

/// `[min_lon, min_lat, max_lon, max_lat]`.
pub type Bbox = [f64; 4];

impl Shape {
    /// A circle, checked.
    pub fn circle(lat: f64, lon: f64, radius_m: f64) -> Result<Shape, FenceError> {
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(FenceError::Circle(
                "centre outside -90..90 / -180..180".into(),
            ));
        }
        if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= 100_000.0) {
            return Err(FenceError::Circle("radius must be 0 < r ≤ 100000 m".into()));
        }
        Ok(Shape::Circle { lat, lon, radius_m })
    }

    /// Parse GeoJSON geometry text (Polygon or MultiPolygon; rings closed automatically).
    pub fn from_geojson(text: &str) -> Result<Shape, FenceError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| FenceError::Geometry(format!("not JSON: {e}")))?;
        Self::from_geojson_value(&v)
    }

    /// Parse a GeoJSON geometry value.
    pub fn from_geojson_value(v: &Value) -> Result<Shape, FenceError> {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let coords = v
            .get("coordinates")
            .ok_or_else(|| FenceError::Geometry("no \"coordinates\"".into()))?;
        let mut count = 0usize;
        let polys = match kind {
            "Polygon" => vec![polygon(coords, &mut count)?],
            "MultiPolygon" => coords
                .as_array()
                .ok_or_else(|| {
                    FenceError::Geometry("MultiPolygon coordinates must be an array".into())
                })?
                .iter()
                .map(|p| polygon(p, &mut count))
                .collect::<Result<_, _>>()?,
            other => {
                return Err(FenceError::Geometry(format!(
                    "type must be Polygon or MultiPolygon, not {other:?}"
                )))
            }
        };
        if polys.is_empty() {
            return Err(FenceError::Geometry("no polygon".into()));
        }
        Ok(Shape::Area(MultiPolygon(polys)))
    }

    /// Whether the WGS-84 point is inside (on the boundary counts as outside for polygons).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        match self {
            Shape::Circle {
                lat: clat,
                lon: clon,
                radius_m,
            } => haversine_m(*clat, *clon, lat, lon) <= *radius_m,
            Shape::Area(mp) => mp.contains(&Point::new(lon, lat)),
        }
    }

    /// Bounding box.
    pub fn bbox(&self) -> Bbox {
        match self {
            Shape::Circle { lat, lon, radius_m } => {
                let dlat = radius_m / 111_195.0;
                let dlon = dlat / lat.to_radians().cos().max(0.01);
                [lon - dlon, lat - dlat, lon + dlon, lat + dlat]
            }
            Shape::Area(mp) => mp
                .bounding_rect()
                .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
                .unwrap_or([0.0; 4]),
        }
    }
}

fn polygon(v: &Value, count: &mut usize) -> Result<Polygon<f64>, FenceError> {
    let rings = v
        .as_array()
        .ok_or_else(|| FenceError::Geometry("a polygon must be an array of rings".into()))?;
    let mut out = Vec::with_capacity(rings.len());
    for (ri, r) in rings.iter().enumerate() {
        let pts = r
            .as_array()
            .ok_or_else(|| FenceError::Geometry(format!("ring {ri} is not an array")))?;
        let mut cs = Vec::with_capacity(pts.len() + 1);
        for (pi, p) in pts.iter().enumerate() {
            *count += 1;
            if *count > MAX_VERTICES {
                return Err(FenceError::Geometry(format!(
                    "more than {MAX_VERTICES} vertices"
                )));
            }
            let pos = p.as_array().filter(|a| a.len() >= 2).ok_or_else(|| {
                FenceError::Geometry(format!("ring {ri} point {pi} is not [lon, lat]"))
            })?;
            let lon = pos[0].as_f64().unwrap_or(f64::NAN);
            let lat = pos[1].as_f64().unwrap_or(f64::NAN);
            if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                return Err(FenceError::Geometry(format!(
                    "ring {ri} point {pi}: longitude/latitude out of range"
                )));
            }
            cs.push(Coord { x: lon, y: lat });
        }
        if cs.first() != cs.last() {
            if let Some(&f) = cs.first() {
                cs.push(f);
            }
        }
        if cs.len() < 4 {
            return Err(FenceError::Geometry(format!(
                "ring {ri} needs at least 3 distinct points"
            )));
        }
        out.push(LineString(cs));
    }
    let mut it = out.into_iter();
    let exterior = it
        .next()
        .ok_or_else(|| FenceError::Geometry("a polygon needs an outer ring".into()))?;
    Ok(Polygon::new(exterior, it.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_contains() {
        let s = Shape::from_geojson(
            r#"{"type":"Polygon","coordinates":[[[121.0,31.0],[121.1,31.0],[121.1,31.1],[121.0,31.1]]]}"#,
        )
        .unwrap();
        assert!(s.contains(31.05, 121.05));
        assert!(!s.contains(31.15, 121.05));
        assert_eq!(s.bbox(), [121.0, 31.0, 121.1, 31.1]);
    }

    #[test]
    fn circle_contains() {
        let s = Shape::circle(31.2, 121.4, 100.0).unwrap();
        assert!(s.contains(31.2005, 121.4)); // ≈ 56 m
        assert!(!s.contains(31.2010, 121.4)); // ≈ 111 m
        let b = s.bbox();
        assert!(b[0] < 121.4 && b[2] > 121.4 && b[1] < 31.2 && b[3] > 31.2);
    }

    #[test]
    fn rejects_bad_geometry() {
        for bad in [
            "nope",
            r#"{"type":"Point","coordinates":[121,31]}"#,
            r#"{"type":"Polygon","coordinates":[[[121,31],[121.1,31]]]}"#,
            r#"{"type":"Polygon","coordinates":[[[121,91],[121.1,31],[121,31.1]]]}"#,
            r#"{"type":"Polygon","coordinates":[["x"]]}"#,
            r#"{"type":"MultiPolygon","coordinates":[]}"#,
        ] {
            assert!(Shape::from_geojson(bad).is_err(), "{bad}");
        }
        assert!(Shape::circle(31.0, 121.0, 0.0).is_err());
        assert!(Shape::circle(95.0, 121.0, 10.0).is_err());
    }
}
