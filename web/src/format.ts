// Formatting helpers: all API times are RFC 3339 UTC, shown in Asia/Shanghai.

export const TZ = 'Asia/Shanghai';

const dateTimeFmt = new Intl.DateTimeFormat('zh-CN', {
  timeZone: TZ,
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
});

const dateFmt = new Intl.DateTimeFormat('zh-CN', {
  timeZone: TZ,
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
});

function parts(fmt: Intl.DateTimeFormat, d: Date): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of fmt.formatToParts(d)) out[p.type] = p.value;
  return out;
}

/** "2024-05-01 16:00:00" in Asia/Shanghai, or "—" for empty / invalid input. */
export function fmtDateTime(s: string | null | undefined): string {
  if (!s) return '—';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  const p = parts(dateTimeFmt, d);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

/** "2024-05-01" in Asia/Shanghai. Plain dates ("2024-05-01") are shown as they are. */
export function fmtDate(s: string | null | undefined): string {
  if (!s) return '—';
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return s;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return s;
  const p = parts(dateFmt, d);
  return `${p.year}-${p.month}-${p.day}`;
}

/**
 * Convert the value of an <input type="datetime-local"> (wall time, meant as Asia/Shanghai,
 * which has had no DST since 1991) into an RFC 3339 UTC string.
 */
export function shanghaiLocalToUtc(local: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(local);
  if (!m) return '';
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4] - 8, +m[5], m[6] ? +m[6] : 0);
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** Inverse of shanghaiLocalToUtc, for prefilling datetime-local inputs. */
export function utcToShanghaiLocal(utc: string): string {
  const d = new Date(utc);
  if (Number.isNaN(d.getTime())) return '';
  const p = parts(dateTimeFmt, d);
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}

export function isFuture(s: string | null | undefined): boolean {
  if (!s) return false;
  const t = new Date(s).getTime();
  return !Number.isNaN(t) && t > Date.now();
}

export const ROLE_NAMES: Record<string, string> = {
  admin: '系统管理员',
  corps_leader: '总队领导',
  operator: '调度员',
  reviewer: '审查员',
  brigade_head: '区大队负责人',
  squad_leader: '区执法组负责人',
  statistician: '区数据统计人员',
  clerk: '区工单维护人员',
  officer: '执法人员',
  soe_user: '国有集团用户',
};

export const ORG_KIND_NAMES: Record<string, string> = {
  corps: '执法总队',
  brigade: '区执法大队',
  squad: '执法组',
  town: '街镇',
  soe_group: '国有集团',
};

export const ENTERPRISE_STATUS: Record<string, string> = {
  operating: '在营',
  suspended: '停产停业',
  closed: '关闭',
};

export const OFFICER_STATUS: Record<string, string> = {
  active: '在岗',
  inactive: '离岗',
};

export const ACCOUNT_STATUS: Record<string, string> = {
  active: '正常',
  disabled: '已停用',
};

export const APPLICATION_STATUS: Record<string, string> = {
  pending: '待审核',
  approved: '已通过',
  rejected: '已驳回',
};

export const AUDIT_OUTCOME: Record<string, string> = {
  success: '成功',
  failure: '失败',
  denied: '拒绝',
};

/** Fallback supervised sectors (GLOSSARY); replaced by /reference/sectors when it loads. */
export const DEFAULT_SECTORS: { code: string; name: string }[] = [
  { code: '01', name: '煤矿' },
  { code: '02', name: '非煤' },
  { code: '03', name: '危险化学品' },
  { code: '04', name: '烟花爆竹' },
  { code: '05', name: '工贸' },
  { code: '06', name: '其他' },
];

export function label(map: Record<string, string>, code: string | null | undefined): string {
  if (code === null || code === undefined || code === '') return '—';
  return map[code] ?? code;
}

export const INSPECTION_KIND: Record<string, string> = {
  planned: '计划检查',
  complaint: '投诉举报',
  referral: '转办交办',
  triggered: '触发式监管',
};

export const INSPECTION_STATUS: Record<string, string> = {
  in_progress: '检查中',
  completed: '已完成',
  cancelled: '已取消',
};

export const ITEM_RESULT: Record<string, string> = {
  pass: '符合',
  hazard: '存在隐患',
  not_applicable: '不适用',
};

export const HAZARD_LEVEL: Record<string, string> = {
  general: '一般隐患',
  major: '重大事故隐患',
};

export const HAZARD_STATUS: Record<string, string> = {
  rectifying: '整改中',
  rectified: '待复查',
  closed: '已销号',
  escalated: '已移交立案',
};

export const CASE_STATUS: Record<string, string> = {
  filing_review: '立案审批中',
  open: '办理中',
  closing_review: '结案审批中',
  closed: '已结案',
  not_filed: '不予立案',
};

export const DOC_STATUS: Record<string, string> = {
  draft: '草稿',
  approved: '已审批',
};

/** Fen as "12,345.00 元". */
export function fmtYuan(cents: number | null | undefined): string {
  if (cents === null || cents === undefined) return '—';
  const yuan = (cents / 100).toLocaleString('zh-CN', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return `${yuan} 元`;
}

/** Today's date in Asia/Shanghai plus `days`, as YYYY-MM-DD (for date inputs). */
export function shanghaiDatePlus(days: number): string {
  const d = new Date(Date.now() + 8 * 3600_000 + days * 86_400_000);
  return d.toISOString().slice(0, 10);
}

/** UTC ms as "2024-05-01 16:00:00" in Asia/Shanghai ("—" when absent). */
export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  return fmtDateTime(new Date(ms).toISOString());
}

/** UTC ms as the value of an <input type="datetime-local" step="1"> (Asia/Shanghai wall time). */
export function msToShanghaiLocal(ms: number): string {
  const p = parts(dateTimeFmt, new Date(ms));
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}`;
}

/** The value of a datetime-local input (Asia/Shanghai) as UTC ms, or null when empty / invalid. */
export function shanghaiLocalToMs(local: string): number | null {
  const utc = shanghaiLocalToUtc(local);
  if (!utc) return null;
  const ms = Date.parse(utc);
  return Number.isNaN(ms) ? null : ms;
}

/** A span of milliseconds as "1:02:03" or "02:03". */
export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.round(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Bytes as "1.2 MB". */
export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export const RECORDING_STATUS: Record<string, string> = {
  recording: '录制中',
  closed: '已结束',
};

export const RECORDING_SOURCE: Record<string, string> = {
  live: '实时流',
  upload: '上传',
  device: '设备导入',
};

export const RECORDING_TRIGGER: Record<string, string> = {
  always: '始终录像',
  on_demand: '按需录像',
  dispatch_call: '调度呼叫',
  import: '导入',
};

export const LINK_STATE: Record<string, string> = {
  linked: '已关联',
  suggested: '系统建议',
  dismissed: '已忽略',
};

export const CODEC_NAMES: Record<string, string> = {
  h264: 'H.264',
  h265: 'H.265',
  g711a: 'G.711A',
  g711u: 'G.711U',
  aac: 'AAC',
  opus: 'Opus',
};
