//! Track simplification (Douglas–Peucker) with a tolerance in metres.

use crate::geodesy::LocalProjection;

/// Indices of the points of `pts` (`(lat, lon)`) kept by Douglas–Peucker with `tolerance_m`.
/// The first and last points are always kept; the result is in ascending order. Iterative, so
/// a track of any length cannot overflow the stack.
pub fn douglas_peucker(pts: &[(f64, f64)], tolerance_m: f64) -> Vec<usize> {
    let n = pts.len();
    if n <= 2 {
        return (0..n).collect();
    }
    let ref_lat = pts.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let proj = LocalProjection::new(ref_lat);
    let xy: Vec<[f64; 2]> = pts.iter().map(|&(la, lo)| proj.project(la, lo)).collect();
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[n - 1] = true;
    let mut stack = vec![(0usize, n - 1)];
    let tol2 = tolerance_m * tolerance_m;
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (mut best, mut best_d) = (a, -1.0);
        for i in a + 1..b {
            let d = seg_dist2(xy[i], xy[a], xy[b]);
            if d > best_d {
                best = i;
                best_d = d;
            }
        }
        if best_d > tol2 {
            keep[best] = true;
            stack.push((a, best));
            stack.push((best, b));
        }
    }
    keep.iter()
        .enumerate()
        .filter_map(|(i, &k)| k.then_some(i))
        .collect()
}

fn seg_dist2(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0)
    };
    let (cx, cy) = (a[0] + t * dx, a[1] + t * dy);
    (p[0] - cx).powi(2) + (p[1] - cy).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_line_collapses_to_ends() {
        let pts: Vec<(f64, f64)> = (0..100).map(|i| (31.2, 121.4 + i as f64 * 1e-4)).collect();
        assert_eq!(douglas_peucker(&pts, 1.0), vec![0, 99]);
    }

    #[test]
    fn keeps_a_corner_beyond_tolerance() {
        // East 1 km, then north 1 km: the corner must stay at 10 m tolerance.
        let mut pts: Vec<(f64, f64)> = (0..=10)
            .map(|i| (31.2, 121.4 + i as f64 * 0.00105))
            .collect();
        pts.extend((1..=10).map(|i| (31.2 + i as f64 * 0.0009, 121.4105)));
        let kept = douglas_peucker(&pts, 10.0);
        assert_eq!(kept, vec![0, 10, 20]);
        // A 50 m wiggle disappears at 100 m tolerance and stays at 10 m.
        let mut w: Vec<(f64, f64)> = (0..=20).map(|i| (31.2, 121.4 + i as f64 * 1e-3)).collect();
        w[10].0 += 0.00045;
        assert_eq!(douglas_peucker(&w, 100.0), vec![0, 20]);
        assert!(douglas_peucker(&w, 10.0).contains(&10));
    }

    #[test]
    fn small_inputs() {
        assert!(douglas_peucker(&[], 5.0).is_empty());
        assert_eq!(douglas_peucker(&[(31.0, 121.0)], 5.0), vec![0]);
    }
}
