// A small in-memory stand-in for the shouhu /api/v1 office endpoints, for working on web/ and
// trying office.test.mjs without the Rust server. It serves ../../web/dist at `/` (SPA fallback)
// and implements the API contract the web shell uses, with invented demo data.
// It is NOT the server: behaviour here proves nothing about shouhu itself.
//
//   (cd ../../web && npm run build) && node mock-server.mjs [port]      # default 8080
//   SHOUHU_URL=http://127.0.0.1:8080 SHOUHU_ADMIN_USER=admin SHOUHU_ADMIN_PASSWORD='Admin@2025' npm test
//
// Accounts: admin / Admin@2025; leader / Leader@2025 (corps_leader); head / Head@2025
// (brigade_head); newbie / Newbie@2025 (must change password); locked (locked for 15 minutes).

import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, '..', '..', 'web', 'dist');
const PORT = Number(process.argv[2] ?? process.env.PORT ?? 8080);

const now = () => new Date().toISOString();
const ALPHA = '0123456789ABCDEFGHJKLMNPQRTUWXY';
const W = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
function uscc(n) {
  const body = `913101${String(n).padStart(3, '0')}MA1${String(n * 7919).padStart(8, '0').slice(-8)}`.slice(0, 17);
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += ALPHA.indexOf(body[i]) * W[i];
  return body + ALPHA[(31 - (sum % 31)) % 31];
}

// ---- demo data ----
const org = [];
const addOrg = (parent_id, kind, name, code) => {
  const u = { id: randomUUID(), parent_id, kind, name, code };
  org.push(u);
  return u;
};
const corps = addOrg(null, 'corps', '市应急管理局执法总队', '310000');
const districts = [
  ['浦东新区执法大队', '310115', ['张江镇', '川沙新镇', '高桥镇']],
  ['闵行区执法大队', '310112', ['莘庄镇', '七宝镇']],
  ['嘉定区执法大队', '310114', ['安亭镇', '南翔镇', '马陆镇']],
].map(([name, code, towns]) => {
  const b = addOrg(corps.id, 'brigade', name, code);
  addOrg(b.id, 'squad', `${name.slice(0, 3)}第一执法组`, `${code}01`);
  const ts = towns.map((t, i) => addOrg(b.id, 'town', t, `${code}1${i}`));
  return { b, ts };
});
const soe = addOrg(corps.id, 'soe_group', '城建投资集团', 'SOE01');

const roles = [
  ['admin', '系统管理员'],
  ['corps_leader', '总队领导'],
  ['operator', '调度员'],
  ['reviewer', '审查员'],
  ['brigade_head', '区大队负责人'],
  ['squad_leader', '区执法组负责人'],
  ['statistician', '区数据统计人员'],
  ['clerk', '区工单维护人员'],
  ['officer', '执法人员'],
  ['soe_user', '国有集团用户'],
].map(([code, name]) => ({ code, name }));

const sectors = [
  ['01', '煤矿'],
  ['02', '非煤'],
  ['03', '危险化学品'],
  ['04', '烟花爆竹'],
  ['05', '工贸'],
  ['06', '其他'],
].map(([code, name]) => ({ code, name }));
const ownership = ['国有集体', '联营', '私营', '有限责任', '股份有限', '股份合作', '港澳台', '外商投资', '分公司', '其他'];
const industries = [
  ['C2614', '有机化学原料制造'],
  ['C3311', '金属结构制造'],
  ['C1810', '机织服装制造'],
  ['G5942', '危险化学品仓储'],
  ['F5162', '石油及制品批发'],
].map(([code, name]) => ({ code, name }));

const accounts = [];
const passwords = new Map();
const addAccount = (username, display_name, role, unit, password, extra = {}) => {
  const a = {
    id: randomUUID(),
    username,
    display_name,
    role,
    org_unit_id: unit.id,
    org_unit_name: unit.name,
    status: 'active',
    must_change_password: false,
    locked_until: null,
    last_login_at: null,
    created_at: now(),
    ...extra,
  };
  accounts.push(a);
  passwords.set(a.id, password);
  return a;
};
addAccount('admin', '系统管理员', 'admin', corps, 'Admin@2025');
addAccount('leader', '王总队', 'corps_leader', corps, 'Leader@2025');
addAccount('head', '李大队', 'brigade_head', districts[0].b, 'Head@2025');
addAccount('newbie', '新同事', 'officer', districts[0].b, 'Newbie@2025', { must_change_password: true });
addAccount('locked', '被锁定', 'officer', districts[1].b, 'Locked@2025', { locked_until: new Date(Date.now() + 15 * 60_000).toISOString() });

const prefixes = ['华东', '申江', '浦江', '金桥', '东方', '宏达', '明珠', '海港', '长江', '新华', '中环', '远洋', '恒通', '瑞丰', '天成'];
const kinds = ['精细化工', '金属制品', '服装', '物流仓储', '石油化工', '机械制造', '包装材料', '电子科技'];
const enterprises = [];
for (let i = 0; i < 57; i++) {
  const d = districts[i % districts.length];
  const t = d.ts[i % d.ts.length];
  const created = new Date(Date.UTC(2024, 0, 1) + i * 86400_000 * 5).toISOString();
  enterprises.push({
    id: randomUUID(),
    name: `${t.name.slice(0, 2)}${prefixes[i % prefixes.length]}${kinds[i % kinds.length]}有限公司`,
    uscc: uscc(i + 1),
    district_id: d.b.id,
    district_name: d.b.name,
    town_id: t.id,
    town_name: t.name,
    soe_group_id: i % 9 === 0 ? soe.id : null,
    soe_group_name: i % 9 === 0 ? soe.name : null,
    address: `${d.b.name.slice(0, 3)}${t.name}${['科苑路', '东川路', '博学路', '曹安公路'][i % 4]}${100 + i}号`,
    lon: 121.3 + (i % 10) * 0.03,
    lat: 31.1 + (i % 7) * 0.02,
    legal_representative: ['张伟', '王芳', '李强', '赵敏'][i % 4],
    principal_name: ['陈刚', '刘洋', '周杰', '吴磊'][i % 4],
    principal_phone: `139${String(10000000 + i * 7777).slice(0, 8)}`,
    ownership_type: ownership[i % ownership.length],
    industry_code: industries[i % industries.length].code,
    sector: ['03', '05', '05', '02', '06'][i % 5],
    key_unit_years: i % 3 === 0 ? [2024, 2025] : [],
    status: i % 11 === 0 ? 'suspended' : 'operating',
    tags: i % 4 === 0 ? ['重点'] : [],
    created_at: created,
    updated_at: created,
    version: 1,
  });
}
const officers = Array.from({ length: 24 }, (_, i) => {
  const u = districts[i % 3].b;
  return {
    id: randomUUID(),
    name: ['张明', '李华', '王磊', '赵静', '孙涛', '周敏'][i % 6] + (i >= 6 ? String(i) : ''),
    certificate_no: `3100${String(100000 + i)}`,
    org_unit_id: u.id,
    org_unit_name: u.name,
    phone: `138${String(20000000 + i * 13).slice(0, 8)}`,
    account_id: null,
    status: i % 7 === 0 ? 'inactive' : 'active',
    created_at: now(),
    updated_at: now(),
    version: 1,
  };
});
const items = [];
const itemHistory = new Map();
['主要负责人履行安全生产职责', '安全生产责任制', '隐患排查治理', '有限空间作业', '粉尘防爆', '危险作业审批', '应急预案演练'].forEach(
  (title, i) => {
    const it = {
      id: randomUUID(),
      code: `GM-${String(i + 1).padStart(3, '0')}`,
      sector: i < 1 ? '06' : '05',
      category: i < 1 ? '主要负责人履职' : '工贸重点事项',
      title: `检查${title}落实情况`,
      legal_basis: '《中华人民共和国安全生产法》第二十一条',
      source: '工贸行业重点检查事项',
      effective_date: '2024-01-01',
      active: true,
      version: 1,
      updated_at: now(),
    };
    items.push(it);
    itemHistory.set(it.id, [{ version: 1, snapshot: { ...it }, changed_by: 'admin', changed_at: it.updated_at }]);
  },
);
const applications = [];
const audit = [];

// ---- helpers ----
const sessions = new Map(); // token -> account id
const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
};
const fail = (res, status, code, message, extra = {}) => json(res, status, { code, message, ...extra });
const noContent = (res, headers = {}) => {
  res.writeHead(204, headers);
  res.end();
};
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
async function readJson(req) {
  const b = await readBody(req);
  if (!b.length) return {};
  return JSON.parse(b.toString('utf8'));
}
function paginate(list, q) {
  const page = Math.max(1, Number(q.get('page')) || 1);
  const page_size = Math.min(200, Math.max(1, Number(q.get('page_size')) || 20));
  return { items: list.slice((page - 1) * page_size, page * page_size), total: list.length, page, page_size };
}
function record(acc, action, target_kind, target_id, outcome, details, req) {
  audit.unshift({
    id: randomUUID(),
    at: now(),
    username: acc?.username ?? null,
    action,
    target_kind,
    target_id,
    ip: req.socket.remoteAddress ?? null,
    outcome,
    details,
  });
}
const orgName = (id) => org.find((u) => u.id === id)?.name ?? null;
function checkUscc(s) {
  if (typeof s !== 'string' || s.length !== 18) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) {
    const v = ALPHA.indexOf(s[i]);
    if (v < 0) return false;
    sum += v * W[i];
  }
  return ALPHA[(31 - (sum % 31)) % 31] === s[17];
}

// ---- static files ----
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };
async function serveStatic(req, res, path) {
  let p = normalize(decodeURIComponent(path)).replace(/^(\.\.[/\\])+/, '');
  if (p.endsWith('/')) p += 'index.html';
  let file = join(DIST, p);
  try {
    if (!(await stat(file)).isFile()) throw new Error('dir');
  } catch {
    file = join(DIST, 'index.html');
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('web/dist not built: run npm run build in web/');
  }
}

// ---- API ----
async function api(req, res, url) {
  const path = url.pathname.slice('/api/v1'.length);
  const q = url.searchParams;
  const m = req.method;
  const cookie = /(?:^|;\s*)shouhu_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  const acc = accounts.find((a) => a.id === sessions.get(cookie));

  if (m === 'POST' && path === '/auth/login') {
    const b = await readJson(req);
    const a = accounts.find((x) => x.username === b.username);
    if (a && a.locked_until && new Date(a.locked_until) > new Date()) {
      record(a, 'auth.login', 'account', a.id, 'denied', { reason: 'locked' }, req);
      return fail(res, 423, 'account_locked', `账号已锁定，请于 ${a.locked_until} 后再试`, { locked_until: a.locked_until });
    }
    if (!a || passwords.get(a.id) !== b.password) {
      record(a, 'auth.login', 'account', a?.id ?? null, 'failure', { username: b.username }, req);
      return fail(res, 401, 'invalid_credentials', '用户名或密码错误');
    }
    if (a.status !== 'active') return fail(res, 403, 'account_disabled', '账号已停用，请联系管理员');
    for (const [t, id] of sessions) if (id === a.id) sessions.delete(t);
    const token = randomUUID();
    sessions.set(token, a.id);
    a.last_login_at = now();
    record(a, 'auth.login', 'account', a.id, 'success', { wall_screen: Boolean(b.wall_screen) }, req);
    return json(res, 200, { token, account: a }, { 'Set-Cookie': `shouhu_session=${token}; HttpOnly; Path=/; SameSite=Strict` });
  }
  if (!acc) return fail(res, 401, 'unauthenticated', '请先登录');
  if (m === 'POST' && path === '/auth/logout') {
    sessions.delete(cookie);
    return noContent(res, { 'Set-Cookie': 'shouhu_session=; HttpOnly; Path=/; Max-Age=0' });
  }
  if (m === 'GET' && path === '/auth/me') return json(res, 200, acc);
  if (m === 'POST' && path === '/auth/password') {
    const b = await readJson(req);
    if (passwords.get(acc.id) !== b.old_password) return fail(res, 400, 'invalid_old_password', '原密码不正确');
    if (b.old_password === b.new_password) return fail(res, 422, 'weak_password', '新密码不能与原密码相同');
    passwords.set(acc.id, b.new_password);
    acc.must_change_password = false;
    return noContent(res);
  }
  if (acc.must_change_password) return fail(res, 403, 'password_change_required', '请先修改密码');

  if (m === 'GET' && path === '/roles') return json(res, 200, roles);
  if (m === 'GET' && path === '/reference/sectors') return json(res, 200, sectors);
  if (m === 'GET' && path === '/reference/ownership-types') return json(res, 200, ownership);
  if (m === 'GET' && path === '/reference/industry-codes') return json(res, 200, industries);
  if (m === 'GET' && path === '/org-units') return json(res, 200, org);
  if (m === 'POST' && path === '/org-units') {
    if (acc.role !== 'admin') return fail(res, 403, 'forbidden', '没有权限');
    const b = await readJson(req);
    if (org.some((u) => u.code === b.code)) return fail(res, 409, 'duplicate_code', `编码 ${b.code} 已存在`);
    const u = addOrg(b.parent_id, b.kind, b.name, b.code);
    return json(res, 201, u);
  }

  // enterprises
  if (path === '/enterprises' && m === 'GET') {
    let list = enterprises.slice();
    const s = q.get('q');
    if (s) list = list.filter((e) => e.name.includes(s) || e.uscc.includes(s.toUpperCase()) || (e.address ?? '').includes(s));
    for (const k of ['district_id', 'town_id', 'sector', 'status']) if (q.get(k)) list = list.filter((e) => e[k] === q.get(k));
    if (q.get('key_unit_year')) list = list.filter((e) => e.key_unit_years.includes(Number(q.get('key_unit_year'))));
    const sort = q.get('sort') || '-updated_at';
    const key = { name: 'name', uscc: 'uscc', district: 'district_name', industry_code: 'industry_code', sector: 'sector', updated_at: 'updated_at' }[sort.replace(/^-/, '')];
    if (!key) return fail(res, 400, 'bad_sort', `不支持的排序字段：${sort}`);
    const dir = sort.startsWith('-') ? -1 : 1;
    list.sort((a, b) => dir * String(a[key] ?? '').localeCompare(String(b[key] ?? ''), 'zh-CN') || a.id.localeCompare(b.id));
    return json(res, 200, paginate(list, q));
  }
  if (path === '/enterprises/export.xlsx' && m === 'GET') {
    res.writeHead(200, {
      'Content-Type': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
      'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent('企业档案.xlsx')}`,
    });
    return res.end(Buffer.from('PK mock'));
  }
  if (path === '/enterprises/import' && m === 'POST') {
    const body = (await readBody(req)).toString('utf8');
    const lines = body.split(/\r?\n/).filter(Boolean);
    const errors = [];
    lines.slice(1).forEach((l, i) => {
      const [name, code] = l.split(',');
      if (!name) errors.push({ row: i + 2, field: 'name', message: '企业名称不能为空' });
      if (!checkUscc(code)) errors.push({ row: i + 2, field: 'uscc', message: '统一社会信用代码校验位错误' });
    });
    if (errors.length) return fail(res, 422, 'import_rejected', '文件中有错误，未导入', { errors });
    return json(res, 200, { imported: lines.length - 1 });
  }
  let mm = /^\/enterprises\/([^/]+)$/.exec(path);
  if (mm) {
    const e = enterprises.find((x) => x.id === mm[1]);
    if (!e) return fail(res, 404, 'not_found', '企业不存在');
    if (m === 'GET') return json(res, 200, e);
    if (m === 'DELETE') {
      enterprises.splice(enterprises.indexOf(e), 1);
      return noContent(res);
    }
    if (m === 'PUT') {
      const b = await readJson(req);
      if (b.version !== e.version) return fail(res, 409, 'version_conflict', '该记录已被他人修改，请重新加载后再编辑');
      if (!checkUscc(b.uscc)) return fail(res, 422, 'validation', '统一社会信用代码无效', { errors: [{ field: 'uscc', message: '校验位错误' }] });
      Object.assign(e, b, {
        district_name: orgName(b.district_id),
        town_name: orgName(b.town_id),
        soe_group_name: orgName(b.soe_group_id),
        version: e.version + 1,
        updated_at: now(),
      });
      record(acc, 'enterprise.update', 'enterprise', e.id, 'success', { version: e.version }, req);
      return json(res, 200, e);
    }
  }
  if (path === '/enterprises' && m === 'POST') {
    const b = await readJson(req);
    if (enterprises.some((x) => x.uscc === b.uscc)) return fail(res, 409, 'duplicate_uscc', '该统一社会信用代码已存在');
    const e = {
      ...b,
      id: randomUUID(),
      district_name: orgName(b.district_id),
      town_name: orgName(b.town_id),
      soe_group_name: orgName(b.soe_group_id),
      created_at: now(),
      updated_at: now(),
      version: 1,
    };
    enterprises.push(e);
    return json(res, 201, e);
  }

  // officers
  if (path === '/officers' && m === 'GET') {
    let list = officers.slice();
    const s = q.get('q');
    if (s) list = list.filter((o) => o.name.includes(s) || o.certificate_no.includes(s) || (o.phone ?? '').includes(s));
    for (const k of ['org_unit_id', 'status']) if (q.get(k)) list = list.filter((o) => o[k] === q.get(k));
    return json(res, 200, paginate(list, q));
  }
  if (path === '/officers' && m === 'POST') {
    const b = await readJson(req);
    const o = { ...b, id: randomUUID(), org_unit_name: orgName(b.org_unit_id), created_at: now(), updated_at: now(), version: 1 };
    officers.push(o);
    return json(res, 201, o);
  }
  if (path === '/officers/import' && m === 'POST') return json(res, 200, { imported: 0 });
  mm = /^\/officers\/([^/]+)$/.exec(path);
  if (mm) {
    const o = officers.find((x) => x.id === mm[1]);
    if (!o) return fail(res, 404, 'not_found', '执法人员不存在');
    if (m === 'GET') return json(res, 200, o);
    if (m === 'DELETE') {
      officers.splice(officers.indexOf(o), 1);
      return noContent(res);
    }
    if (m === 'PUT') {
      const b = await readJson(req);
      if (b.version !== o.version) return fail(res, 409, 'version_conflict', '该记录已被他人修改');
      Object.assign(o, b, { org_unit_name: orgName(b.org_unit_id), version: o.version + 1, updated_at: now() });
      return json(res, 200, o);
    }
  }

  // inspection items
  if (path === '/inspection-items' && m === 'GET') {
    let list = items.slice();
    const s = q.get('q');
    if (s) list = list.filter((i) => i.code.includes(s) || i.title.includes(s) || i.legal_basis.includes(s));
    if (q.get('sector')) list = list.filter((i) => i.sector === q.get('sector'));
    if (q.get('active')) list = list.filter((i) => String(i.active) === q.get('active'));
    return json(res, 200, paginate(list, q));
  }
  if (path === '/inspection-items' && m === 'POST') {
    const b = await readJson(req);
    const it = { ...b, id: randomUUID(), version: 1, updated_at: now() };
    items.push(it);
    itemHistory.set(it.id, [{ version: 1, snapshot: { ...it }, changed_by: acc.username, changed_at: it.updated_at }]);
    return json(res, 201, it);
  }
  mm = /^\/inspection-items\/([^/]+)(\/history)?$/.exec(path);
  if (mm) {
    const it = items.find((x) => x.id === mm[1]);
    if (!it) return fail(res, 404, 'not_found', '检查事项不存在');
    if (mm[2] && m === 'GET') return json(res, 200, itemHistory.get(it.id) ?? []);
    if (!mm[2] && m === 'PUT') {
      const b = await readJson(req);
      if (b.version !== it.version) return fail(res, 409, 'version_conflict', '该事项已被他人修改');
      Object.assign(it, b, { version: it.version + 1, updated_at: now() });
      itemHistory.get(it.id).push({ version: it.version, snapshot: { ...it }, changed_by: acc.username, changed_at: it.updated_at });
      return json(res, 200, it);
    }
  }

  // accounts
  if (path === '/accounts' && m === 'GET') {
    if (acc.role !== 'admin') return fail(res, 403, 'forbidden', '没有权限');
    let list = accounts.slice();
    const s = q.get('q');
    if (s) list = list.filter((a) => a.username.includes(s) || a.display_name.includes(s));
    for (const k of ['role', 'org_unit_id']) if (q.get(k)) list = list.filter((a) => a[k] === q.get(k));
    return json(res, 200, paginate(list, q));
  }
  if (path === '/accounts' && m === 'POST') {
    const b = await readJson(req);
    if (accounts.some((a) => a.username === b.username)) return fail(res, 409, 'duplicate_username', `用户名 ${b.username} 已存在`);
    const unit = org.find((u) => u.id === b.org_unit_id);
    if (!unit) return fail(res, 422, 'validation', '所属单位不存在');
    return json(res, 201, addAccount(b.username, b.display_name, b.role, unit, b.password, { must_change_password: true }));
  }
  mm = /^\/accounts\/([^/]+)\/(unlock|disable|enable|reset-password)$/.exec(path);
  if (mm && m === 'POST') {
    const a = accounts.find((x) => x.id === mm[1]);
    if (!a) return fail(res, 404, 'not_found', '账号不存在');
    const b = await readJson(req);
    if (mm[2] === 'unlock') a.locked_until = null;
    if (mm[2] === 'disable') a.status = 'disabled';
    if (mm[2] === 'enable') a.status = 'active';
    if (mm[2] === 'reset-password') {
      passwords.set(a.id, b.new_password);
      a.must_change_password = true;
    }
    record(acc, `account.${mm[2]}`, 'account', a.id, 'success', {}, req);
    return json(res, 200, a);
  }

  // applications
  if (path === '/account-applications' && m === 'GET') {
    const list = applications.filter((a) => !q.get('status') || a.status === q.get('status'));
    return json(res, 200, paginate(list, q));
  }
  if (path === '/account-applications' && m === 'POST') {
    const b = await readJson(req);
    const a = {
      ...b,
      id: randomUUID(),
      org_unit_name: orgName(b.org_unit_id),
      status: 'pending',
      applicant_username: acc.username,
      decided_by_username: null,
      decision_reason: null,
      created_at: now(),
      decided_at: null,
    };
    applications.unshift(a);
    return json(res, 201, a);
  }
  mm = /^\/account-applications\/([^/]+)\/(approve|reject)$/.exec(path);
  if (mm && m === 'POST') {
    const a = applications.find((x) => x.id === mm[1]);
    if (!a) return fail(res, 404, 'not_found', '申请不存在');
    if (a.status !== 'pending') return fail(res, 409, 'already_decided', '该申请已处理');
    const b = await readJson(req);
    Object.assign(a, { decided_by_username: acc.username, decided_at: now() });
    if (mm[2] === 'reject') {
      Object.assign(a, { status: 'rejected', decision_reason: b.reason });
      return json(res, 200, a);
    }
    a.status = 'approved';
    const temporary_password = 'Tmp#' + randomUUID().slice(0, 8);
    const account = addAccount(a.username, a.display_name, a.role, org.find((u) => u.id === a.org_unit_id) ?? corps, temporary_password, {
      must_change_password: true,
    });
    return json(res, 200, { application: a, account, temporary_password });
  }

  if (path === '/audit' && m === 'GET') {
    let list = audit.slice();
    if (q.get('username')) list = list.filter((a) => (a.username ?? '').includes(q.get('username')));
    if (q.get('action')) list = list.filter((a) => a.action.includes(q.get('action')));
    if (q.get('outcome')) list = list.filter((a) => a.outcome === q.get('outcome'));
    if (q.get('from')) list = list.filter((a) => a.at >= q.get('from'));
    if (q.get('to')) list = list.filter((a) => a.at <= q.get('to'));
    return json(res, 200, paginate(list, q));
  }
  if (path === '/openapi.json') return json(res, 200, { openapi: '3.1.0', info: { title: 'shouhu (mock)', version: '0' }, paths: {} });
  return fail(res, 404, 'not_found', `接口不存在：${m} ${path}`);
}

createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  try {
    if (url.pathname.startsWith('/api/v1/')) await api(req, res, url);
    else await serveStatic(req, res, url.pathname);
  } catch (e) {
    fail(res, 500, 'internal', `内部错误：${e.message}`);
  }
}).listen(PORT, '127.0.0.1', () => console.log(`mock shouhu on http://127.0.0.1:${PORT}`));
