// Web-Mercator projection and the map viewport (no tiles: everything is drawn from coordinates).
//
// World coordinates are normalised to 0..1 (x east from 180°W, y south from 85.05°N); a screen
// pixel at zoom z is 1 / (256 · 2^z) of the world.

export const TILE = 256;
export const MIN_ZOOM = 8;
export const MAX_ZOOM = 19;
const MAX_LAT = 85.05112878;
const EARTH_CIRCUMFERENCE_M = 40_075_016.686;

export type BBox = [number, number, number, number];

export function lonToX(lon: number): number {
  return (lon + 180) / 360;
}

export function latToY(lat: number): number {
  const s = Math.sin((Math.max(-MAX_LAT, Math.min(MAX_LAT, lat)) * Math.PI) / 180);
  return 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
}

export function xToLon(x: number): number {
  return x * 360 - 180;
}

export function yToLat(y: number): number {
  const n = Math.PI - 2 * Math.PI * y;
  return (180 / Math.PI) * Math.atan(Math.sinh(n));
}

/** Great-circle distance in metres. */
export function haversine(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = (d: number) => (d * Math.PI) / 180;
  const dLat = r(lat2 - lat1);
  const dLon = r(lon2 - lon1);
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(r(lat1)) * Math.cos(r(lat2)) * Math.sin(dLon / 2) ** 2;
  return 2 * 6_371_008.8 * Math.asin(Math.min(1, Math.sqrt(a)));
}

export class Viewport {
  /** Centre in world coordinates. */
  cx = lonToX(121.475);
  cy = latToY(31.225);
  zoom = 11;
  /** Size in CSS pixels. */
  width = 0;
  height = 0;

  get scale(): number {
    return TILE * 2 ** this.zoom;
  }

  sx(wx: number): number {
    return (wx - this.cx) * this.scale + this.width / 2;
  }

  sy(wy: number): number {
    return (wy - this.cy) * this.scale + this.height / 2;
  }

  toScreen(lon: number, lat: number): [number, number] {
    return [this.sx(lonToX(lon)), this.sy(latToY(lat))];
  }

  toWorld(px: number, py: number): [number, number] {
    const s = this.scale;
    return [this.cx + (px - this.width / 2) / s, this.cy + (py - this.height / 2) / s];
  }

  toLonLat(px: number, py: number): { lon: number; lat: number } {
    const [wx, wy] = this.toWorld(px, py);
    return { lon: xToLon(wx), lat: yToLat(wy) };
  }

  /** The visible area, `[min_lon, min_lat, max_lon, max_lat]`, grown by `pad` of its size on each side. */
  bounds(pad = 0): BBox {
    const dx = this.width * pad;
    const dy = this.height * pad;
    const a = this.toLonLat(-dx, this.height + dy);
    const b = this.toLonLat(this.width + dx, -dy);
    return [a.lon, a.lat, b.lon, b.lat];
  }

  metersPerPixel(lat = yToLat(this.cy)): number {
    return (EARTH_CIRCUMFERENCE_M * Math.cos((lat * Math.PI) / 180)) / this.scale;
  }

  setCenter(lon: number, lat: number): void {
    this.cx = lonToX(lon);
    this.cy = latToY(lat);
  }

  center(): { lon: number; lat: number } {
    return { lon: xToLon(this.cx), lat: yToLat(this.cy) };
  }

  /** Zoom to `z`, keeping the point under screen position (px, py) in place. */
  zoomAround(z: number, px = this.width / 2, py = this.height / 2): void {
    const nz = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, z));
    const [wx, wy] = this.toWorld(px, py);
    this.zoom = nz;
    const s = this.scale;
    this.cx = wx - (px - this.width / 2) / s;
    this.cy = wy - (py - this.height / 2) / s;
  }

  panBy(dx: number, dy: number): void {
    const s = this.scale;
    this.cx = Math.max(0, Math.min(1, this.cx - dx / s));
    this.cy = Math.max(0, Math.min(1, this.cy - dy / s));
  }

  /** Show `bbox` whole, with `margin` CSS pixels around it. */
  fit(bbox: BBox, margin = 20, maxZoom = MAX_ZOOM): void {
    const x0 = lonToX(bbox[0]);
    const x1 = lonToX(bbox[2]);
    const y0 = latToY(bbox[3]);
    const y1 = latToY(bbox[1]);
    this.cx = (x0 + x1) / 2;
    this.cy = (y0 + y1) / 2;
    const w = Math.max(1, this.width - 2 * margin);
    const hgt = Math.max(1, this.height - 2 * margin);
    const zx = Math.log2(w / Math.max(1e-12, (x1 - x0) * TILE));
    const zy = Math.log2(hgt / Math.max(1e-12, (y1 - y0) * TILE));
    this.zoom = Math.max(MIN_ZOOM, Math.min(maxZoom, Math.min(zx, zy)));
  }
}

/** A "nice" step (1, 2, 5 · 10^n) not smaller than `x`. */
export function niceStep(x: number): number {
  const p = 10 ** Math.floor(Math.log10(x));
  const f = x / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/** The largest nice length (1, 2, 5 · 10^n metres) not longer than `maxM`. */
export function niceLength(maxM: number): number {
  const p = 10 ** Math.floor(Math.log10(maxM));
  const f = maxM / p;
  return (f >= 5 ? 5 : f >= 2 ? 2 : 1) * p;
}

/** "500 米" / "2 公里" for the scale bar. */
export function scaleLabel(m: number): string {
  return m >= 1000 ? `${+(m / 1000).toFixed(3)} 公里` : `${Math.round(m)} 米`;
}

/** Degrees with as many decimals as the graticule step needs. */
export function fmtDegrees(v: number, step: number, pos: string, neg: string): string {
  const decimals = Math.max(0, Math.min(6, Math.ceil(-Math.log10(step) - 1e-9)));
  return `${Math.abs(v).toFixed(decimals)}°${v >= 0 ? pos : neg}`;
}
