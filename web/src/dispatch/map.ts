// The dispatch map: a <canvas> drawn from coordinates alone (the machine has no map tiles).
//
// Web-Mercator, pan by dragging, zoom by wheel / buttons / double click / keyboard, a lat-lon
// graticule with labels, a scale bar, district outlines, enterprise geofences when zoomed in, unit
// markers, a track, the dispatch target and SOS pins. It redraws in requestAnimationFrame only when
// something changed (`requestRedraw`).

import { h } from '../dom';
import {
  fmtDegrees,
  latToY,
  lonToX,
  MAX_ZOOM,
  niceLength,
  niceStep,
  scaleLabel,
  Viewport,
  type BBox,
} from './geo';
import { KIND_NAMES, LINK_COLORS, LINK_NAMES, SOS_RED, STATE_COLORS, STATE_NAMES, hasFix, type Geofence, type Unit } from './model';

/** Initial view: central Shanghai. */
export const SHANGHAI_BBOX: BBox = [121.3, 31.1, 121.65, 31.35];

const BG = '#eef2f6';
const GRID = 'rgba(80, 100, 125, 0.16)';
const GRID_LABEL = '#6b7785';
const DISTRICT_STROKE = '#5a7bab';
const DISTRICT_FILL = 'rgba(31, 78, 140, 0.035)';
const DISTRICT_LABEL = '#34527f';
const ENTERPRISE_STROKE = '#c27c0e';
const CUSTOM_STROKE = '#7a5cc2';
const TRACK = '#2f6fdc';
const TARGET = '#d4380d';
const FONT = "'PingFang SC', 'Microsoft YaHei', 'Noto Sans CJK SC', 'WenQuanYi Micro Hei', sans-serif";

/** Zoom from which enterprise / custom geofences are drawn. */
const FENCE_ZOOM = 13;

/** A polygon ring in world coordinates (x0, y0, x1, y1, …). */
type Ring = Float64Array;

interface PreparedFence {
  id: string;
  name: string;
  kind: string;
  polygons: Ring[][];
  circle: { wx: number; wy: number; lat: number; radius_m: number } | null;
  /** Label anchor in world coordinates. */
  lx: number;
  ly: number;
  /** World bounds. */
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
}

export interface MapTrack {
  /** [lon, lat] pairs. */
  coords: [number, number][];
  times: string[];
}

export interface MapTarget {
  lat: number;
  lon: number;
  name: string;
}

export interface NearestPoint {
  id: string;
  lat: number | null;
  lon: number | null;
}

export interface SosPin {
  id: string;
  unit_id: string;
  unit_name: string;
  lat: number;
  lon: number;
  /** Not yet acknowledged: drawn blinking. */
  raised: boolean;
}

export interface MapCallbacks {
  /** A unit (or an SOS pin's unit) was clicked; null when empty map was clicked. */
  onSelect: (unitId: string | null) => void;
  /** A point was chosen for 就近调度 (right click, or a click in pick mode). */
  onPick: (p: { lon: number; lat: number }) => void;
  /** The viewport changed (pan, zoom, resize). Called often; debounce on the caller's side. */
  onViewChange: () => void;
  /** Pick mode was switched on or off (also by Esc or a pick). */
  onPickModeChange?: (on: boolean) => void;
}

function parseGeometry(g: Geofence['geometry']): { type: string; coordinates: unknown } | null {
  if (!g) return null;
  if (typeof g === 'string') {
    try {
      const v: unknown = JSON.parse(g);
      return v && typeof v === 'object' ? (v as { type: string; coordinates: unknown }) : null;
    } catch {
      return null;
    }
  }
  return g;
}

function toRing(coords: unknown): Ring | null {
  if (!Array.isArray(coords) || coords.length < 3) return null;
  const out = new Float64Array(coords.length * 2);
  let n = 0;
  for (const p of coords) {
    if (!Array.isArray(p) || typeof p[0] !== 'number' || typeof p[1] !== 'number') continue;
    out[n++] = lonToX(p[0]);
    out[n++] = latToY(p[1]);
  }
  return n >= 6 ? out.subarray(0, n) : null;
}

/** Area-weighted centroid of a ring (world coordinates), with its absolute area. */
function ringCentroid(r: Ring): { x: number; y: number; area: number } {
  let a = 0;
  let cx = 0;
  let cy = 0;
  for (let i = 0, j = r.length - 2; i < r.length; j = i, i += 2) {
    const f = r[j] * r[i + 1] - r[i] * r[j + 1];
    a += f;
    cx += (r[j] + r[i]) * f;
    cy += (r[j + 1] + r[i + 1]) * f;
  }
  if (Math.abs(a) < 1e-18) return { x: r[0], y: r[1], area: 0 };
  return { x: cx / (3 * a), y: cy / (3 * a), area: Math.abs(a / 2) };
}

export function prepareFence(g: Geofence): PreparedFence | null {
  const geom = parseGeometry(g.geometry);
  const polygons: Ring[][] = [];
  if (geom?.type === 'Polygon' && Array.isArray(geom.coordinates)) {
    const rings = (geom.coordinates as unknown[]).map(toRing).filter((r): r is Ring => r !== null);
    if (rings.length) polygons.push(rings);
  } else if (geom?.type === 'MultiPolygon' && Array.isArray(geom.coordinates)) {
    for (const poly of geom.coordinates as unknown[]) {
      if (!Array.isArray(poly)) continue;
      const rings = poly.map(toRing).filter((r): r is Ring => r !== null);
      if (rings.length) polygons.push(rings);
    }
  }
  let circle: PreparedFence['circle'] = null;
  const c = g.circle;
  if (!polygons.length && c && Number.isFinite(c.lat) && Number.isFinite(c.lon) && c.radius_m > 0) {
    circle = { wx: lonToX(c.lon), wy: latToY(c.lat), lat: c.lat, radius_m: c.radius_m };
  }
  if (!polygons.length && !circle) return null;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  let lx = 0;
  let ly = 0;
  let best = -1;
  for (const poly of polygons) {
    const outer = poly[0];
    for (let i = 0; i < outer.length; i += 2) {
      minX = Math.min(minX, outer[i]);
      maxX = Math.max(maxX, outer[i]);
      minY = Math.min(minY, outer[i + 1]);
      maxY = Math.max(maxY, outer[i + 1]);
    }
    const cen = ringCentroid(outer);
    if (cen.area > best) {
      best = cen.area;
      lx = cen.x;
      ly = cen.y;
    }
  }
  if (circle) {
    // Radius in world units (metres per world unit at this latitude).
    const r = circle.radius_m / (40_075_016.686 * Math.cos((circle.lat * Math.PI) / 180));
    minX = circle.wx - r;
    maxX = circle.wx + r;
    minY = circle.wy - r;
    maxY = circle.wy + r;
    lx = circle.wx;
    ly = circle.wy;
  }
  return { id: g.id, name: g.name, kind: g.kind, polygons, circle, lx, ly, minX, minY, maxX, maxY };
}

/** A rounded square centred on (x, y). */
function roundedSquare(ctx: CanvasPath, x: number, y: number, half: number, r: number): void {
  const x0 = x - half;
  const y0 = y - half;
  const s = half * 2;
  ctx.moveTo(x0 + r, y0);
  ctx.lineTo(x0 + s - r, y0);
  ctx.quadraticCurveTo(x0 + s, y0, x0 + s, y0 + r);
  ctx.lineTo(x0 + s, y0 + s - r);
  ctx.quadraticCurveTo(x0 + s, y0 + s, x0 + s - r, y0 + s);
  ctx.lineTo(x0 + r, y0 + s);
  ctx.quadraticCurveTo(x0, y0 + s, x0, y0 + s - r);
  ctx.lineTo(x0, y0 + r);
  ctx.quadraticCurveTo(x0, y0, x0 + r, y0);
  ctx.closePath();
}

/**
 * Add a unit's marker to `shape` (vehicle = rounded square, recorder = diamond, officer = circle)
 * and a vehicle's heading arrow (a triangle outside the square, 0° = north) to `arrows`.
 */
function shapePath(shape: CanvasPath, arrows: CanvasPath, u: Pick<Unit, 'kind' | 'heading_deg'>, x: number, y: number, s: number): void {
  if (u.kind === 'vehicle') {
    const hd = u.heading_deg;
    if (typeof hd === 'number' && Number.isFinite(hd)) {
      const a = ((hd - 90) * Math.PI) / 180;
      const dx = Math.cos(a);
      const dy = Math.sin(a);
      const tip = s + 8;
      const base = s - 1;
      const half = s * 0.8;
      arrows.moveTo(x + dx * tip, y + dy * tip);
      arrows.lineTo(x + dx * base - dy * half, y + dy * base + dx * half);
      arrows.lineTo(x + dx * base + dy * half, y + dy * base - dx * half);
      arrows.closePath();
    }
    roundedSquare(shape, x, y, s, Math.max(1.5, s / 3));
  } else if (u.kind === 'recorder') {
    const d = s + 1.5;
    shape.moveTo(x, y - d);
    shape.lineTo(x + d, y);
    shape.lineTo(x, y + d);
    shape.lineTo(x - d, y);
    shape.closePath();
  } else {
    shape.moveTo(x + s, y);
    shape.arc(x, y, s, 0, Math.PI * 2);
  }
}

/**
 * Draw one marker: SOS halo (blinking), selection ring, dispatch-state ring, heading arrow, shape
 * filled by link (red while an SOS blinks on) with a white outline.
 */
function drawMarker(
  ctx: CanvasRenderingContext2D,
  u: Pick<Unit, 'kind' | 'link' | 'state' | 'heading_deg' | 'sos'>,
  x: number,
  y: number,
  s: number,
  blinkOn: boolean,
  selected: boolean,
): void {
  const sosOn = Boolean(u.sos) && blinkOn;
  if (u.sos) {
    ctx.beginPath();
    ctx.arc(x, y, s + (sosOn ? 10 : 7), 0, Math.PI * 2);
    ctx.fillStyle = sosOn ? 'rgba(224, 40, 27, 0.30)' : 'rgba(224, 40, 27, 0.10)';
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = SOS_RED;
    ctx.stroke();
  }
  if (selected) {
    ctx.beginPath();
    ctx.arc(x, y, s + 8, 0, Math.PI * 2);
    ctx.fillStyle = 'rgba(15, 42, 79, 0.12)';
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = '#0f2a4f';
    ctx.stroke();
  }
  const ring = STATE_COLORS[u.state];
  if (ring) {
    ctx.beginPath();
    ctx.arc(x, y, s + 3.5, 0, Math.PI * 2);
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = ring;
    ctx.stroke();
  }
  const shape = new Path2D();
  const arrow = new Path2D();
  shapePath(shape, arrow, u, x, y, s);
  ctx.fillStyle = '#2b3440';
  ctx.fill(arrow);
  ctx.fillStyle = sosOn ? SOS_RED : (LINK_COLORS[u.link] ?? LINK_COLORS.unknown);
  ctx.fill(shape);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = '#fff';
  ctx.stroke(shape);
}

export class MapView {
  readonly el: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  readonly view = new Viewport();
  /** The units to draw (owned by the page; the map only reads it). */
  units: Map<string, Unit>;
  selectedId: string | null = null;
  /** The next left click picks a point for 就近调度 instead of selecting. */
  pickMode = false;

  private readonly ctx: CanvasRenderingContext2D;
  private readonly cb: MapCallbacks;
  private readonly tip: HTMLElement;
  private readonly coords: HTMLElement;
  private readonly ro: ResizeObserver;
  private districts: PreparedFence[] = [];
  private fences: PreparedFence[] = [];
  private track: { wx: Float64Array; wy: Float64Array; raw: MapTrack } | null = null;
  private target: MapTarget | null = null;
  private nearest: NearestPoint[] = [];
  private sosPins: SosPin[] = [];
  private blinkOn = true;
  private frame = 0;
  private hoverFrame = 0;
  private initialised = false;
  private dpr = 1;
  private destroyed = false;
  // Screen positions of what can be clicked, from the last draw.
  private hitIds: string[] = [];
  private hitXY = new Float32Array(0);
  private hitCount = 0;
  /** Marker sprites by kind / link / state / size / heading (see `sprite`). */
  private sprites = new Map<string, { canvas: HTMLCanvasElement; half: number }>();
  // Pointer state.
  private drag: { id: number; x: number; y: number; sx: number; sy: number; moved: boolean } | null = null;
  private lastHover: { x: number; y: number } | null = null;

  constructor(units: Map<string, Unit>, cb: MapCallbacks) {
    this.units = units;
    this.cb = cb;
    this.canvas = h('canvas', {
      class: 'dmap-canvas',
      testid: 'dispatch-map',
      tabindex: 0,
      role: 'application',
      'aria-label': '调度地图：拖动平移，滚轮或加减号缩放，点击选择单元，右键选点',
    });
    const ctx = this.canvas.getContext('2d');
    if (!ctx) throw new Error('canvas 2d context unavailable');
    this.ctx = ctx;
    this.tip = h('div', { class: 'dmap-tip', hidden: true });
    this.coords = h('div', { class: 'dmap-coords', testid: 'map-coords' });
    const zoomBtn = (label: string, title: string, testid: string, fn: () => void) =>
      h('button', { type: 'button', class: 'dmap-btn', title, 'aria-label': title, testid, onclick: fn }, label);
    this.el = h(
      'div',
      { class: 'dmap' },
      this.canvas,
      h(
        'div',
        { class: 'dmap-zoom' },
        zoomBtn('+', '放大', 'map-zoom-in', () => this.zoomBy(1)),
        zoomBtn('−', '缩小', 'map-zoom-out', () => this.zoomBy(-1)),
        zoomBtn('⌂', '复位到上海中心城区', 'map-home', () => this.home()),
      ),
      this.tip,
      this.coords,
    );

    this.canvas.addEventListener('pointerdown', this.onPointerDown);
    this.canvas.addEventListener('pointermove', this.onPointerMove);
    this.canvas.addEventListener('pointerup', this.onPointerUp);
    this.canvas.addEventListener('pointercancel', this.onPointerCancel);
    this.canvas.addEventListener('pointerleave', this.onPointerLeave);
    this.canvas.addEventListener('wheel', this.onWheel, { passive: false });
    this.canvas.addEventListener('dblclick', this.onDblClick);
    this.canvas.addEventListener('contextmenu', this.onContextMenu);
    this.canvas.addEventListener('keydown', this.onKeyDown);
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.el);
  }

  destroy(): void {
    this.destroyed = true;
    this.ro.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    if (this.hoverFrame) cancelAnimationFrame(this.hoverFrame);
    this.frame = this.hoverFrame = 0;
    this.canvas.removeEventListener('pointerdown', this.onPointerDown);
    this.canvas.removeEventListener('pointermove', this.onPointerMove);
    this.canvas.removeEventListener('pointerup', this.onPointerUp);
    this.canvas.removeEventListener('pointercancel', this.onPointerCancel);
    this.canvas.removeEventListener('pointerleave', this.onPointerLeave);
    this.canvas.removeEventListener('wheel', this.onWheel);
    this.canvas.removeEventListener('dblclick', this.onDblClick);
    this.canvas.removeEventListener('contextmenu', this.onContextMenu);
    this.canvas.removeEventListener('keydown', this.onKeyDown);
  }

  // ------------------------------------------------------------------------------------------
  // Data

  setDistricts(list: Geofence[]): void {
    this.districts = list.map(prepareFence).filter((f): f is PreparedFence => f !== null);
    this.requestRedraw();
  }

  setFences(list: Geofence[]): void {
    this.fences = list.map(prepareFence).filter((f): f is PreparedFence => f !== null);
    this.requestRedraw();
  }

  setTrack(t: MapTrack | null): void {
    if (!t || t.coords.length === 0) {
      this.track = null;
    } else {
      const wx = new Float64Array(t.coords.length);
      const wy = new Float64Array(t.coords.length);
      t.coords.forEach(([lon, lat], i) => {
        wx[i] = lonToX(lon);
        wy[i] = latToY(lat);
      });
      this.track = { wx, wy, raw: t };
    }
    this.requestRedraw();
  }

  setTarget(t: MapTarget | null): void {
    this.target = t;
    this.requestRedraw();
  }

  /** The 就近调度 candidates: lines from the target to each (live position when known). */
  setNearest(list: NearestPoint[]): void {
    this.nearest = list;
    this.requestRedraw();
  }

  setSosPins(pins: SosPin[]): void {
    this.sosPins = pins;
    this.requestRedraw();
  }

  /** Toggle the blink phase; redraws only when something blinks. */
  blink(): void {
    this.blinkOn = !this.blinkOn;
    if (this.sosPins.some((p) => p.raised)) {
      this.requestRedraw();
      return;
    }
    for (const u of this.units.values()) {
      if (u.sos) {
        this.requestRedraw();
        return;
      }
    }
  }

  setPickMode(on: boolean): void {
    if (this.pickMode === on) return;
    this.pickMode = on;
    this.canvas.classList.toggle('picking', on);
    this.cb.onPickModeChange?.(on);
  }

  // ------------------------------------------------------------------------------------------
  // View

  home(): void {
    this.view.fit(SHANGHAI_BBOX, 10);
    this.viewChanged();
  }

  zoomBy(dz: number, px?: number, py?: number): void {
    this.view.zoomAround(Math.round((this.view.zoom + dz) * 4) / 4, px, py);
    this.viewChanged();
  }

  centerOn(lon: number, lat: number, minZoom = 0): void {
    this.view.setCenter(lon, lat);
    if (this.view.zoom < minZoom) this.view.zoom = Math.min(MAX_ZOOM, minZoom);
    this.viewChanged();
  }

  fitBounds(b: BBox, maxZoom = 17): void {
    this.view.fit(b, 40, maxZoom);
    this.viewChanged();
  }

  private viewChanged(): void {
    this.requestRedraw();
    this.cb.onViewChange();
  }

  private resize(): void {
    if (this.destroyed) return;
    const w = this.el.clientWidth;
    const hgt = this.el.clientHeight;
    if (w <= 0 || hgt <= 0) return;
    const dpr = window.devicePixelRatio || 1;
    if (dpr !== this.dpr) this.sprites.clear();
    this.dpr = dpr;
    this.canvas.width = Math.round(w * this.dpr);
    this.canvas.height = Math.round(hgt * this.dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${hgt}px`;
    this.view.width = w;
    this.view.height = hgt;
    if (!this.initialised) {
      this.initialised = true;
      this.view.fit(SHANGHAI_BBOX, 10);
    }
    this.viewChanged();
  }

  /** Whether the map has a size (the first subscription waits for it). */
  get ready(): boolean {
    return this.initialised;
  }

  requestRedraw(): void {
    if (this.frame || this.destroyed) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  // ------------------------------------------------------------------------------------------
  // Pointer and keyboard

  private local(ev: MouseEvent): { x: number; y: number } {
    const r = this.canvas.getBoundingClientRect();
    return { x: ev.clientX - r.left, y: ev.clientY - r.top };
  }

  private onPointerDown = (ev: PointerEvent): void => {
    if (ev.button !== 0) return;
    const p = this.local(ev);
    this.drag = { id: ev.pointerId, x: p.x, y: p.y, sx: p.x, sy: p.y, moved: false };
    this.canvas.setPointerCapture(ev.pointerId);
    this.canvas.focus({ preventScroll: true });
  };

  private onPointerMove = (ev: PointerEvent): void => {
    const p = this.local(ev);
    const d = this.drag;
    if (d && d.id === ev.pointerId) {
      if (!d.moved && Math.hypot(p.x - d.sx, p.y - d.sy) > 4) {
        d.moved = true;
        this.canvas.classList.add('dragging');
        this.tip.hidden = true;
      }
      if (d.moved) {
        this.view.panBy(p.x - d.x, p.y - d.y);
        d.x = p.x;
        d.y = p.y;
        this.viewChanged();
      }
      return;
    }
    this.lastHover = p;
    if (!this.hoverFrame) {
      this.hoverFrame = requestAnimationFrame(() => {
        this.hoverFrame = 0;
        this.updateHover();
      });
    }
  };

  private onPointerUp = (ev: PointerEvent): void => {
    const d = this.drag;
    if (!d || d.id !== ev.pointerId) return;
    this.drag = null;
    this.canvas.classList.remove('dragging');
    if (this.canvas.hasPointerCapture(ev.pointerId)) this.canvas.releasePointerCapture(ev.pointerId);
    if (d.moved) return;
    const p = this.local(ev);
    if (this.pickMode) {
      this.setPickMode(false);
      this.cb.onPick(this.view.toLonLat(p.x, p.y));
      return;
    }
    this.cb.onSelect(this.hitTest(p.x, p.y));
  };

  private onPointerCancel = (): void => {
    this.drag = null;
    this.canvas.classList.remove('dragging');
  };

  private onPointerLeave = (): void => {
    this.lastHover = null;
    this.tip.hidden = true;
    this.coords.textContent = '';
  };

  private onWheel = (ev: WheelEvent): void => {
    ev.preventDefault();
    const unit = ev.deltaMode === 1 ? 40 : ev.deltaMode === 2 ? 400 : 1;
    const dz = Math.max(-1, Math.min(1, (-ev.deltaY * unit) / 400));
    if (dz === 0) return;
    const p = this.local(ev);
    this.view.zoomAround(this.view.zoom + dz, p.x, p.y);
    this.viewChanged();
  };

  private onDblClick = (ev: MouseEvent): void => {
    ev.preventDefault();
    const p = this.local(ev);
    this.zoomBy(ev.shiftKey ? -1 : 1, p.x, p.y);
  };

  private onContextMenu = (ev: MouseEvent): void => {
    ev.preventDefault();
    const p = this.local(ev);
    this.cb.onPick(this.view.toLonLat(p.x, p.y));
  };

  private onKeyDown = (ev: KeyboardEvent): void => {
    const step = 80;
    switch (ev.key) {
      case '+':
      case '=':
        this.zoomBy(1);
        break;
      case '-':
      case '_':
        this.zoomBy(-1);
        break;
      case 'ArrowLeft':
        this.view.panBy(step, 0);
        this.viewChanged();
        break;
      case 'ArrowRight':
        this.view.panBy(-step, 0);
        this.viewChanged();
        break;
      case 'ArrowUp':
        this.view.panBy(0, step);
        this.viewChanged();
        break;
      case 'ArrowDown':
        this.view.panBy(0, -step);
        this.viewChanged();
        break;
      case 'Escape':
        if (this.pickMode) this.setPickMode(false);
        else this.cb.onSelect(null);
        break;
      default:
        return;
    }
    ev.preventDefault();
  };

  private updateHover(): void {
    const p = this.lastHover;
    if (!p || this.drag) return;
    const ll = this.view.toLonLat(p.x, p.y);
    this.coords.textContent = `${ll.lon.toFixed(5)}°E, ${ll.lat.toFixed(5)}°N`;
    const id = this.hitTest(p.x, p.y);
    const u = id ? this.units.get(id) : undefined;
    const pin = !u && id ? this.sosPins.find((s) => s.unit_id === id) : undefined;
    if (u || pin) {
      this.canvas.style.cursor = 'pointer';
      this.tip.textContent = u
        ? `${u.name} · ${KIND_NAMES[u.kind] ?? u.kind} · ${LINK_NAMES[u.link] ?? u.link} · ${STATE_NAMES[u.state] ?? u.state}${u.sos ? ' · SOS' : ''}`
        : `紧急报警：${pin!.unit_name}`;
      this.tip.hidden = false;
      const x = Math.min(p.x + 14, this.view.width - this.tip.offsetWidth - 4);
      this.tip.style.left = `${Math.max(4, x)}px`;
      this.tip.style.top = `${Math.max(4, p.y - 30)}px`;
    } else {
      this.canvas.style.cursor = '';
      this.tip.hidden = true;
    }
  }

  /** The unit drawn nearest to (x, y) within reach, or null. */
  hitTest(x: number, y: number): string | null {
    let best: string | null = null;
    let bestD = 12 * 12;
    for (let i = 0; i < this.hitCount; i++) {
      const dx = this.hitXY[2 * i] - x;
      const dy = this.hitXY[2 * i + 1] - y;
      const d = dx * dx + dy * dy;
      if (d <= bestD) {
        bestD = d;
        best = this.hitIds[i];
      }
    }
    return best;
  }

  private addHit(id: string, x: number, y: number): void {
    if (this.hitCount * 2 >= this.hitXY.length) {
      const bigger = new Float32Array(Math.max(256, this.hitXY.length * 2));
      bigger.set(this.hitXY);
      this.hitXY = bigger;
    }
    this.hitXY[2 * this.hitCount] = x;
    this.hitXY[2 * this.hitCount + 1] = y;
    this.hitIds[this.hitCount] = id;
    this.hitCount++;
  }

  // ------------------------------------------------------------------------------------------
  // Drawing

  private draw(): void {
    const ctx = this.ctx;
    const v = this.view;
    if (!this.initialised || v.width <= 0) return;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = BG;
    ctx.fillRect(0, 0, v.width, v.height);
    this.hitCount = 0;

    this.drawGraticule();
    this.drawFences(this.districts, true);
    if (v.zoom >= FENCE_ZOOM) this.drawFences(this.fences, false);
    this.drawTrack();
    this.drawTargetLines();
    this.drawSosPins();
    this.drawUnits();
    this.drawTarget();
    this.drawScaleBar();
  }

  private drawGraticule(): void {
    const ctx = this.ctx;
    const v = this.view;
    const [minLon, minLat, maxLon, maxLat] = v.bounds();
    // Aim for a line every ~110 px.
    const lonStep = niceStep(((maxLon - minLon) * 110) / v.width);
    const latStep = niceStep(((maxLat - minLat) * 110) / v.height);
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.beginPath();
    const lon0 = Math.ceil(minLon / lonStep) * lonStep;
    const lat0 = Math.ceil(minLat / latStep) * latStep;
    const xs: [number, number][] = [];
    const ys: [number, number][] = [];
    for (let lon = lon0; lon <= maxLon; lon += lonStep) {
      const x = Math.round(v.sx(lonToX(lon))) + 0.5;
      ctx.moveTo(x, 0);
      ctx.lineTo(x, v.height);
      xs.push([x, lon]);
    }
    for (let lat = lat0; lat <= maxLat; lat += latStep) {
      const y = Math.round(v.sy(latToY(lat))) + 0.5;
      ctx.moveTo(0, y);
      ctx.lineTo(v.width, y);
      ys.push([y, lat]);
    }
    ctx.stroke();
    ctx.font = `11px ${FONT}`;
    ctx.fillStyle = GRID_LABEL;
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    for (const [x, lon] of xs) if (x > 40) ctx.fillText(fmtDegrees(lon, lonStep, 'E', 'W'), x + 3, 3);
    ctx.textBaseline = 'bottom';
    for (const [y, lat] of ys) if (y > 20) ctx.fillText(fmtDegrees(lat, latStep, 'N', 'S'), 3, y - 2);
  }

  private visible(f: PreparedFence): boolean {
    const v = this.view;
    return v.sx(f.maxX) >= 0 && v.sx(f.minX) <= v.width && v.sy(f.maxY) >= 0 && v.sy(f.minY) <= v.height;
  }

  private drawFences(list: PreparedFence[], district: boolean): void {
    const ctx = this.ctx;
    const v = this.view;
    const s = v.scale;
    const ox = v.width / 2 - v.cx * s;
    const oy = v.height / 2 - v.cy * s;
    const labels: PreparedFence[] = [];
    for (const f of list) {
      if (!this.visible(f)) continue;
      ctx.beginPath();
      if (f.circle) {
        const r = f.circle.radius_m / v.metersPerPixel(f.circle.lat);
        ctx.arc(f.circle.wx * s + ox, f.circle.wy * s + oy, Math.max(1, r), 0, Math.PI * 2);
      }
      for (const poly of f.polygons) {
        for (const ring of poly) {
          ctx.moveTo(ring[0] * s + ox, ring[1] * s + oy);
          for (let i = 2; i < ring.length; i += 2) ctx.lineTo(ring[i] * s + ox, ring[i + 1] * s + oy);
          ctx.closePath();
        }
      }
      if (district) {
        ctx.fillStyle = DISTRICT_FILL;
        ctx.fill('evenodd');
        ctx.strokeStyle = DISTRICT_STROKE;
        ctx.lineWidth = 1.5;
        ctx.setLineDash([]);
      } else {
        ctx.fillStyle = f.kind === 'enterprise' ? 'rgba(194, 124, 14, 0.06)' : 'rgba(122, 92, 194, 0.06)';
        ctx.fill('evenodd');
        ctx.strokeStyle = f.kind === 'enterprise' ? ENTERPRISE_STROKE : CUSTOM_STROKE;
        ctx.lineWidth = 1;
        ctx.setLineDash(f.kind === 'enterprise' ? [] : [4, 3]);
      }
      ctx.stroke();
      ctx.setLineDash([]);
      labels.push(f);
    }
    // Names: districts at every zoom, other fences only when zoomed well in.
    if (!district && v.zoom < 15) return;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.font = district ? `600 ${v.zoom >= 12 ? 15 : 13}px ${FONT}` : `11px ${FONT}`;
    ctx.lineWidth = 3;
    ctx.strokeStyle = 'rgba(255,255,255,0.85)';
    for (const f of labels) {
      const x = f.lx * s + ox;
      const y = f.circle ? f.ly * s + oy - f.circle.radius_m / v.metersPerPixel(f.circle.lat) - 8 : f.ly * s + oy;
      if (x < -50 || x > v.width + 50 || y < -20 || y > v.height + 20) continue;
      ctx.fillStyle = district ? DISTRICT_LABEL : f.kind === 'custom' ? CUSTOM_STROKE : ENTERPRISE_STROKE;
      ctx.strokeText(f.name, x, y);
      ctx.fillText(f.name, x, y);
    }
  }

  private drawTrack(): void {
    const t = this.track;
    if (!t) return;
    const ctx = this.ctx;
    const v = this.view;
    const s = v.scale;
    const ox = v.width / 2 - v.cx * s;
    const oy = v.height / 2 - v.cy * s;
    const n = t.wx.length;
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(t.wx[0] * s + ox, t.wy[0] * s + oy);
    for (let i = 1; i < n; i++) ctx.lineTo(t.wx[i] * s + ox, t.wy[i] * s + oy);
    ctx.strokeStyle = 'rgba(255,255,255,0.9)';
    ctx.lineWidth = 6;
    ctx.stroke();
    ctx.strokeStyle = TRACK;
    ctx.lineWidth = 3;
    ctx.stroke();
    // Direction chevrons every ~80 px.
    ctx.fillStyle = '#fff';
    let acc = 0;
    for (let i = 1; i < n; i++) {
      const x0 = t.wx[i - 1] * s + ox;
      const y0 = t.wy[i - 1] * s + oy;
      const x1 = t.wx[i] * s + ox;
      const y1 = t.wy[i] * s + oy;
      const len = Math.hypot(x1 - x0, y1 - y0);
      acc += len;
      if (acc < 80 || len < 1) continue;
      acc = 0;
      const a = Math.atan2(y1 - y0, x1 - x0);
      const mx = (x0 + x1) / 2;
      const my = (y0 + y1) / 2;
      ctx.beginPath();
      ctx.moveTo(mx + Math.cos(a) * 4, my + Math.sin(a) * 4);
      ctx.lineTo(mx + Math.cos(a + 2.5) * 4, my + Math.sin(a + 2.5) * 4);
      ctx.lineTo(mx + Math.cos(a - 2.5) * 4, my + Math.sin(a - 2.5) * 4);
      ctx.closePath();
      ctx.fill();
    }
    const dot = (i: number, color: string, label: string) => {
      const x = t.wx[i] * s + ox;
      const y = t.wy[i] * s + oy;
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, Math.PI * 2);
      ctx.fillStyle = color;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#fff';
      ctx.stroke();
      ctx.font = `600 10px ${FONT}`;
      ctx.fillStyle = '#fff';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(label, x, y + 0.5);
    };
    dot(0, '#1e9e5a', '起');
    dot(n - 1, '#c0392b', '终');
  }

  /** Dashed lines: the selected unit to its dispatch target, the 就近调度 target to its candidates. */
  private drawTargetLines(): void {
    const ctx = this.ctx;
    const v = this.view;
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1.5;
    const sel = this.selectedId ? this.units.get(this.selectedId) : undefined;
    const tgt = sel?.target;
    if (sel && hasFix(sel) && tgt && typeof tgt.lat === 'number' && typeof tgt.lon === 'number') {
      const [x0, y0] = v.toScreen(sel.lon, sel.lat);
      const [x1, y1] = v.toScreen(tgt.lon, tgt.lat);
      ctx.strokeStyle = STATE_COLORS[sel.state] ?? TRACK;
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      ctx.setLineDash([]);
      this.flag(x1, y1, STATE_COLORS[sel.state] ?? TRACK, tgt.name ?? '');
      ctx.setLineDash([6, 4]);
    }
    if (this.target && this.nearest.length) {
      const [tx, ty] = v.toScreen(this.target.lon, this.target.lat);
      ctx.strokeStyle = 'rgba(212, 56, 13, 0.7)';
      ctx.beginPath();
      for (const n of this.nearest) {
        const u = this.units.get(n.id);
        const p = u && hasFix(u) ? u : n;
        if (typeof p.lat !== 'number' || typeof p.lon !== 'number') continue;
        const [x, y] = v.toScreen(p.lon, p.lat);
        ctx.moveTo(tx, ty);
        ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  private flag(x: number, y: number, color: string, label: string): void {
    const ctx = this.ctx;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x, y - 18);
    ctx.lineWidth = 2;
    ctx.strokeStyle = '#333';
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x, y - 18);
    ctx.lineTo(x + 12, y - 14);
    ctx.lineTo(x, y - 10);
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
    if (label) this.label(label, x + 14, y - 14, '#1f2933');
  }

  private label(text: string, x: number, y: number, color: string, font = `12px ${FONT}`): void {
    const ctx = this.ctx;
    ctx.font = font;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 3;
    ctx.lineJoin = 'round';
    ctx.strokeStyle = 'rgba(255,255,255,0.92)';
    ctx.strokeText(text, x, y);
    ctx.fillStyle = color;
    ctx.fillText(text, x, y);
  }

  private drawSosPins(): void {
    const ctx = this.ctx;
    const v = this.view;
    for (const p of this.sosPins) {
      const [x, y] = v.toScreen(p.lon, p.lat);
      if (x < -30 || y < -30 || x > v.width + 30 || y > v.height + 30) continue;
      const on = !p.raised || this.blinkOn;
      ctx.beginPath();
      ctx.arc(x, y, 16, 0, Math.PI * 2);
      ctx.fillStyle = on ? 'rgba(224, 40, 27, 0.22)' : 'rgba(224, 40, 27, 0.06)';
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = SOS_RED;
      ctx.stroke();
      ctx.font = `700 10px ${FONT}`;
      ctx.fillStyle = SOS_RED;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('SOS', x, y - 22);
      this.addHit(p.unit_id, x, y);
    }
  }

  private drawUnits(): void {
    const ctx = this.ctx;
    const v = this.view;
    const size = v.zoom >= 15 ? 7 : v.zoom >= 12 ? 6 : 5;
    const margin = 40;
    const onScreen: { u: Unit; x: number; y: number }[] = [];
    const special: { u: Unit; x: number; y: number }[] = [];
    let selected: { u: Unit; x: number; y: number } | null = null;
    for (const u of this.units.values()) {
      if (!hasFix(u)) continue;
      const [x, y] = v.toScreen(u.lon, u.lat);
      if (x < -margin || y < -margin || x > v.width + margin || y > v.height + margin) continue;
      const item = { u, x, y };
      if (u.id === this.selectedId) selected = item;
      else {
        onScreen.push(item);
        if (u.sos) special.push(item);
      }
    }
    // Ordinary markers are copied from pre-drawn sprites at whole device pixels (a few thousand
    // drawImage calls stay fast, on a GPU or not); offline first so that online ones end on top.
    const dpr = this.dpr;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    const pass = (u: Unit) => (u.link === 'offline' ? 0 : u.link === 'online' ? 2 : 1);
    for (let p = 0; p < 3; p++) {
      for (const it of onScreen) {
        const u = it.u;
        if (u.sos || pass(u) !== p) continue;
        const spr = this.sprite(u, size);
        ctx.drawImage(spr.canvas, Math.round(it.x * dpr) - spr.half, Math.round(it.y * dpr) - spr.half);
      }
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    for (const it of special) drawMarker(ctx, it.u, it.x, it.y, size, this.blinkOn, false);
    if (selected) drawMarker(ctx, selected.u, selected.x, selected.y, size + 1.5, this.blinkOn, true);
    for (const it of onScreen) this.addHit(it.u.id, it.x, it.y);
    if (selected) this.addHit(selected.u.id, selected.x, selected.y);

    // Names when zoomed in, or when few units are in view (SOS first, at most 400).
    const showLabels = v.zoom >= 15 || (v.zoom >= 12 && onScreen.length <= 80);
    if (showLabels) {
      const ordered = special.length ? [...special, ...onScreen.filter((it) => !it.u.sos)] : onScreen;
      for (let i = 0; i < ordered.length && i < 400; i++) {
        const it = ordered[i];
        this.label(it.u.name, it.x + size + 6, it.y, it.u.sos ? SOS_RED : '#1f2933', `12px ${FONT}`);
      }
    }
    if (selected) this.label(selected.u.name, selected.x + size + 9, selected.y, '#0f2a4f', `600 13px ${FONT}`);
  }

  /** The pre-drawn marker of a unit (kind, link, state, heading in 15° steps, size), at device pixels. */
  private sprite(u: Unit, size: number): { canvas: HTMLCanvasElement; half: number } {
    const hd = u.kind === 'vehicle' && typeof u.heading_deg === 'number' && Number.isFinite(u.heading_deg) ? Math.round(u.heading_deg / 15) % 24 : -1;
    const key = `${u.kind}|${u.link}|${u.state}|${size}|${hd}`;
    let spr = this.sprites.get(key);
    if (!spr) {
      const half = Math.ceil((size + 10) * this.dpr);
      const canvas = document.createElement('canvas');
      canvas.width = canvas.height = half * 2;
      const sctx = canvas.getContext('2d');
      if (sctx) {
        sctx.scale(this.dpr, this.dpr);
        const c = half / this.dpr;
        drawMarker(sctx, { kind: u.kind, link: u.link, state: u.state, heading_deg: hd < 0 ? null : hd * 15, sos: false }, c, c, size, false, false);
      }
      spr = { canvas, half };
      this.sprites.set(key, spr);
    }
    return spr;
  }

  /** The 就近调度 target: a pin with its name. */
  private drawTarget(): void {
    const t = this.target;
    if (!t) return;
    const ctx = this.ctx;
    const [x, y] = this.view.toScreen(t.lon, t.lat);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.bezierCurveTo(x - 3, y - 8, x - 10, y - 12, x - 10, y - 20);
    ctx.arc(x, y - 20, 10, Math.PI, 0);
    ctx.bezierCurveTo(x + 10, y - 12, x + 3, y - 8, x, y);
    ctx.closePath();
    ctx.fillStyle = TARGET;
    ctx.fill();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(x, y - 20, 3.5, 0, Math.PI * 2);
    ctx.fillStyle = '#fff';
    ctx.fill();
    if (t.name) this.label(t.name, x + 13, y - 20, TARGET, `600 12px ${FONT}`);
  }

  private drawScaleBar(): void {
    const ctx = this.ctx;
    const v = this.view;
    const mpp = v.metersPerPixel();
    const len = niceLength(mpp * 120);
    const px = len / mpp;
    const x = 12;
    const y = v.height - 14;
    ctx.fillStyle = 'rgba(255,255,255,0.8)';
    ctx.fillRect(x - 6, y - 20, px + 12, 28);
    ctx.strokeStyle = '#1f2933';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x, y - 6);
    ctx.lineTo(x, y);
    ctx.lineTo(x + px, y);
    ctx.lineTo(x + px, y - 6);
    ctx.stroke();
    ctx.font = `11px ${FONT}`;
    ctx.fillStyle = '#1f2933';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillText(scaleLabel(len), x + px / 2, y - 4);
    ctx.textAlign = 'right';
    ctx.fillStyle = GRID_LABEL;
    ctx.fillText(`WGS-84 · Web 墨卡托 · 缩放 ${v.zoom.toFixed(1)}`, v.width - 8, v.height - 4);
  }
}
