// Shapes of the dispatch contract (docs/api/dispatch-ws.md) and their Chinese labels.

export type UnitKind = 'vehicle' | 'officer' | 'recorder';
export type UnitLink = 'online' | 'unknown' | 'offline';
export type UnitState = 'idle' | 'assigned' | 'on_scene' | 'in_call';
export type SosStatus = 'raised' | 'acknowledged' | 'handled' | 'closed';

export const UNIT_KINDS: UnitKind[] = ['vehicle', 'officer', 'recorder'];
export const UNIT_LINKS: UnitLink[] = ['online', 'unknown', 'offline'];
export const UNIT_STATES: UnitState[] = ['idle', 'assigned', 'on_scene', 'in_call'];

export interface DispatchTarget {
  enterprise_id?: string | null;
  name?: string | null;
  lat?: number | null;
  lon?: number | null;
}

/** A dispatch unit (vehicle, officer, body-worn recorder) as the socket and `/units` send it. */
export interface Unit {
  id: string;
  kind: UnitKind | string;
  name: string;
  org_unit_id: string | null;
  terminal?: string | null;
  device?: string | null;
  lat: number | null;
  lon: number | null;
  time: string | null;
  speed_kmh?: number | null;
  heading_deg?: number | null;
  altitude_m?: number | null;
  accuracy_m?: number | null;
  source?: string | null;
  link: UnitLink | string;
  state: UnitState | string;
  target?: DispatchTarget | null;
  sos?: boolean;
  flags?: string[];
}

export interface Subscription {
  type: 'subscribe';
  bbox?: [number, number, number, number];
  kinds?: string[];
  org_unit_id?: string;
  states?: string[];
  crs: 'wgs84';
}

export interface DispatchEvent {
  kind: 'sos' | 'sos_update' | 'geofence_enter' | 'geofence_leave' | 'online' | 'offline' | 'state' | string;
  id?: string;
  unit_id?: string;
  unit_name?: string;
  time?: string;
  lat?: number | null;
  lon?: number | null;
  geofence_id?: string;
  geofence_name?: string;
  state?: string;
  status?: string;
  by?: string;
  note?: string | null;
}

export type ServerMessage =
  | { type: 'snapshot'; server_time?: string; crs?: string; units: Unit[] }
  | { type: 'units'; units?: Unit[]; gone?: string[] }
  | { type: 'events'; events: DispatchEvent[] }
  | { type: 'pong'; server_time?: string }
  | { type: 'error'; code: string; message?: string }
  | { type: 'positions_ack' };

export interface SosAlarm {
  id: string;
  unit_id: string;
  unit_name: string;
  raised_at: string;
  lat: number | null;
  lon: number | null;
  status: SosStatus | string;
  acknowledged_by?: string | null;
  acknowledged_at?: string | null;
  handled_by?: string | null;
  handled_at?: string | null;
  closed_by?: string | null;
  closed_at?: string | null;
  note?: string | null;
}

export interface Circle {
  lat: number;
  lon: number;
  radius_m: number;
}

export interface Geofence {
  id: string;
  name: string;
  kind: 'district' | 'enterprise' | 'custom' | string;
  org_unit_id: string | null;
  enterprise_id: string | null;
  /** GeoJSON Polygon (or MultiPolygon); some servers may send it as a JSON string. */
  geometry: GeoJsonPolygon | string | null;
  circle: Circle | null;
}

export interface GeoJsonPolygon {
  type: 'Polygon' | 'MultiPolygon' | string;
  coordinates: unknown;
}

export interface NearestItem {
  unit: Unit;
  distance_m: number;
}

export interface TrackCollection {
  type: 'FeatureCollection';
  features: {
    type: 'Feature';
    geometry: { type: string; coordinates: [number, number][] } | null;
    properties?: { times?: string[] } & Record<string, unknown>;
  }[];
}

export const KIND_NAMES: Record<string, string> = {
  vehicle: '车辆',
  officer: '执法人员',
  recorder: '记录仪',
};

/** One character for tight spots (list rows). */
export const KIND_GLYPH: Record<string, string> = {
  vehicle: '车',
  officer: '人',
  recorder: '记',
};

export const LINK_NAMES: Record<string, string> = {
  online: '在线',
  unknown: '未知',
  offline: '离线',
};

export const STATE_NAMES: Record<string, string> = {
  idle: '空闲',
  assigned: '已派遣',
  on_scene: '到场处置',
  in_call: '通话中',
};

export const SOS_STATUS_NAMES: Record<string, string> = {
  raised: '待确认',
  acknowledged: '已确认',
  handled: '已处置',
  closed: '已关闭',
};

export const SOURCE_NAMES: Record<string, string> = {
  jt808: 'JT/T 808 车载终端',
  gb28181: 'GB/T 28181 记录仪',
  app: '手机 App',
};

export const FLAG_NAMES: Record<string, string> = {
  jump: '位置跳变（已暂缓采用）',
  zero_fix: '无有效定位',
  stale: '过期定位',
};

export const EVENT_NAMES: Record<string, string> = {
  sos: '紧急报警',
  sos_update: '报警处理',
  geofence_enter: '进入围栏',
  geofence_leave: '离开围栏',
  online: '上线',
  offline: '离线',
  state: '状态变更',
};

/** Marker colours: fill by link, ring by dispatch state. */
export const LINK_COLORS: Record<string, string> = {
  online: '#1e9e5a',
  unknown: '#e0a100',
  offline: '#98a2ad',
};

export const STATE_COLORS: Record<string, string | null> = {
  idle: null,
  assigned: '#2f6fdc',
  on_scene: '#8e44ad',
  in_call: '#00a5c8',
};

export const SOS_RED = '#e0281b';

export function hasFix(u: Unit): u is Unit & { lat: number; lon: number } {
  return typeof u.lat === 'number' && typeof u.lon === 'number' && Number.isFinite(u.lat) && Number.isFinite(u.lon);
}

/** "850 米" / "12.3 公里". */
export function fmtDistance(m: number | null | undefined): string {
  if (m === null || m === undefined || !Number.isFinite(m)) return '—';
  if (m < 1000) return `${Math.round(m)} 米`;
  return `${(m / 1000).toFixed(m < 10_000 ? 2 : 1)} 公里`;
}

/** RFC 3339 UTC without milliseconds. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
