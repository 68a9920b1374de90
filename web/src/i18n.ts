// zh-CN text for what the API says in English: error codes (docs/api.md) become Chinese
// sentences, field messages (`errors[].message`) are translated by pattern keeping their dynamic
// parts (row numbers, check characters, names), and RFC 3339 times are shown in Asia/Shanghai.
// A message no pattern knows is shown as "（原文）" + the English text.

import { ENTERPRISE_STATUS, ORG_KIND_NAMES, ROLE_NAMES, fmtDateTime } from './format';

export type Labels = Record<string, string>;

// ---------------------------------------------------------------------------------------------
// Field labels (API field name → the label the forms use)

export const ENTERPRISE_FIELDS: Labels = {
  name: '企业名称',
  uscc: '统一社会信用代码',
  district_id: '所属区',
  district: '所属区',
  town_id: '街镇',
  town: '街镇',
  soe_group_id: '所属国有集团',
  soe_group: '所属国有集团',
  address: '地址',
  lon: '经度',
  lat: '纬度',
  legal_representative: '法定代表人',
  principal_name: '主要负责人',
  principal_phone: '主要负责人电话',
  ownership_type: '国民经济类型',
  industry_code: '行业代码',
  sector: '监管行业',
  key_unit_years: '重点单位年度',
  status: '经营状态',
  tags: '标签',
  version: '版本',
};

export const OFFICER_FIELDS: Labels = {
  name: '姓名',
  certificate_no: '执法证号',
  org_unit_id: '所属单位',
  org_unit: '所属单位',
  phone: '电话',
  account_id: '绑定账号',
  status: '状态',
  version: '版本',
};

export const ITEM_FIELDS: Labels = {
  code: '事项编码',
  sector: '监管行业',
  category: '类别',
  title: '检查事项',
  legal_basis: '法律依据',
  source: '来源',
  effective_date: '生效日期',
  active: '启用',
  version: '版本',
};

export const ACCOUNT_FIELDS: Labels = {
  username: '用户名',
  display_name: '姓名',
  password: '密码',
  new_password: '新密码',
  old_password: '原密码',
  role: '角色',
  org_unit_id: '所属单位',
  status: '状态',
  wall_screen: '大屏值守会话',
};

export const APPLICATION_FIELDS: Labels = {
  username: '用户名',
  display_name: '姓名',
  role: '角色',
  org_unit_id: '所属单位',
  reason: '理由',
  status: '状态',
};

export const ORG_UNIT_FIELDS: Labels = {
  parent_id: '上级单位',
  kind: '单位类型',
  name: '单位名称',
  code: '单位编码',
};

export const AUDIT_FIELDS: Labels = {
  username: '用户名',
  action: '操作',
  target_id: '对象',
  outcome: '结果',
  from: '起始时间',
  to: '截止时间',
};

export const ENFORCEMENT_FIELDS: Labels = {
  enterprise_id: '企业',
  kind: '检查类型',
  officer_ids: '执法人员',
  started_at: '开始时间',
  over_cap_reason: '超限检查报备理由',
  results: '检查结果',
  item_id: '检查事项',
  result: '结论',
  note: '说明',
  photo_keys: '照片',
  level: '隐患级别',
  description: '隐患描述',
  rectification_deadline: '整改期限',
  new_deadline: '重新整改期限',
  evidence_keys: '整改证据',
  summary: '检查小结',
  inspection_ids: '关联检查',
  title: '案由',
  violation: '违法事实',
  responsible_person: '责任人',
  party_id_number: '身份证号',
  party_phone: '联系电话',
  proposed_fine_cents: '拟罚款金额',
  company_fine_cents: '对单位罚款',
  person_fine_cents: '对个人罚款',
  paid_cents: '缴款金额',
  paid_at: '缴款时间',
  doc_type: '文书类型',
  content: '内容',
  grade: '监管等级',
  days: '天数',
  action_within_days: '办理期限',
};

export const RECORDING_FIELDS: Labels = {
  device_id: '记录仪',
  channel_id: '通道',
  officer_id: '执法人员',
  org_unit_id: '所属单位',
  enterprise_id: '企业',
  inspection_id: '关联检查',
  from: '起始时间',
  to: '截止时间',
  status: '状态',
  held: '法律保全',
  reason: '保全原因',
  audio: '音频格式',
  days: '保存天数',
};

/** Labels for fields outside any form; ambiguous names get a neutral word. */
const GENERIC_FIELDS: Labels = {
  ...AUDIT_FIELDS,
  ...ORG_UNIT_FIELDS,
  ...APPLICATION_FIELDS,
  ...ITEM_FIELDS,
  ...OFFICER_FIELDS,
  ...ACCOUNT_FIELDS,
  ...ENTERPRISE_FIELDS,
  name: '名称',
  code: '编码',
  status: '状态',
  reason: '理由',
  page: '页码',
  page_size: '每页条数',
  sort: '排序',
  q: '搜索关键字',
  path_prefix: '路径前缀',
  ttl_secs: '有效期',
  key: '关键字段',
  reference: '关联记录',
  ...ENFORCEMENT_FIELDS,
};

/** The Chinese label of an API field: the caller's labels first, then the general list. */
export function fieldLabel(field: string | null | undefined, labels?: Labels): string {
  if (!field) return '—';
  return labels?.[field] ?? GENERIC_FIELDS[field] ?? field;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const CJK = /[\u3400-\u9fff\uff00-\uffef]/;
const RFC3339 = /\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})\b/g;

/** RFC 3339 times inside a text, rewritten as Asia/Shanghai wall time. */
export function localizeTimes(s: string): string {
  return s.replace(RFC3339, (t) => fmtDateTime(t));
}

/** Text that is already Chinese (not an English sentence that merely quotes a Chinese name). */
function isChinese(s: string): boolean {
  return CJK.test(s) && !/[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}/.test(s);
}

/** The original English, marked as such. */
function original(s: string): string {
  return `（原文）${localizeTimes(s)}`;
}

/** A Rust `{:?}` string literal ("a \"b\"") as plain text. */
function unquote(s: string): string {
  let t = s.trim();
  if (t.length >= 2 && ((t.startsWith('"') && t.endsWith('"')) || (t.startsWith("'") && t.endsWith("'")))) t = t.slice(1, -1);
  return t
    .replace(/\\u\{([0-9a-fA-F]{1,6})\}/g, (_, hex: string) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/\\n/g, ' ')
    .replace(/\\t/g, ' ')
    .replace(/\\(["'\\])/g, '$1');
}

/** “名称”, or a note that the cell was empty. */
function quoted(raw: string, emptyText = '（空）'): string {
  const v = unquote(raw);
  return v === '' ? emptyText : `“${v}”`;
}

const KIND_NAMES: Labels = { ...ORG_KIND_NAMES, nothing: '无上级' };

const APPLICATION_STATES: Labels = { pending: '待审核', approved: '已通过', rejected: '已驳回' };

const NOT_FOUND_WHAT: Labels = {
  enterprise: '企业档案',
  officer: '执法人员',
  account: '账号',
  'account application': '账号申请',
  'inspection item': '检查事项',
  'org unit': '组织单位',
  session: '会话',
  blob: '文件',
  row: '记录',
  unit: '调度单元',
  'dispatch unit': '调度单元',
  vehicle: '车辆',
  'sos alarm': '紧急报警',
  sos: '紧急报警',
  geofence: '电子围栏',
  assignment: '派遣任务',
  recording: '录像',
  recorder: '执法记录仪',
  segment: '录像片段',
  inspection: '现场检查',
  'on-demand recording of this channel': '该通道的按需录像',
};

type Rule = [RegExp, (m: RegExpExecArray) => string];

// Field messages (errors[].message), by pattern. Order matters: specific before general.
const FIELD_RULES: Rule[] = [
  [/^at least two officers inspect together$/i, () => '现场检查须至少两名执法人员'],
  [/^an officer is listed twice$/i, () => '执法人员重复'],
  [/^no such enterprise in your scope$/i, () => '企业不存在或不在您的管辖范围内'],
  [/^the enterprise is closed$/i, () => '企业已关闭'],
  [/^must not be in the past$/i, () => '不能早于今天'],
  [/^must be a date YYYY-MM-DD$/i, () => '日期格式应为 YYYY-MM-DD'],
  [/^at most one year ahead$/i, () => '不能晚于一年以后'],
  [/^check at least one item before completing the inspection$/i, () => '请至少检查一项后再完成检查'],
  [/^items marked as hazard have no hazard recorded: (.+)$/i, (m) => `以下事项标为“存在隐患”但未登记隐患：${m[1]}`],
  [/^a case comes from at least one inspection$/i, () => '立案须关联至少一次检查'],
  [/^must be an 18-character resident ID number$/i, () => '应为 18 位居民身份证号'],
  [/^not an enforcement document type$/i, () => '不是执法文书类型'],
  [/^this document is created by the case workflow.*$/i, () => '该文书由立案、处罚决定或结案流程自动生成'],
  [/^required: the visit is over the yearly inspect-once cap$/i, () => '本次检查超过“综合查一次”年度上限，须填写报备理由'],
  [/^a penalty fines the company, the person or both$/i, () => '处罚须对单位或个人（或两者）处以罚款'],
  [/^no such inspection in your scope$/i, () => '检查不存在或不在您的管辖范围内'],
  [/^a hold needs a reason$/i, () => '设置法律保全须填写原因'],
  [/^must be after from$/i, () => '须晚于起始时间'],
  [/^must not be before from$/i, () => '不能早于起始时间'],
  [/^must be recording or closed$/i, () => '应为录制中或已结束'],
  [/^must be aac or original$/i, () => '应为 aac 或 original'],
  [/^1 to 32 letters or digits$/i, () => '应为 1–32 位字母或数字'],
  [/^must not be empty$/i, () => '不能为空'],
  [/^required$/i, () => '必填'],
  [/^already exists$/i, () => '已存在'],
  [/^already registered$/i, () => '已登记（系统中已有相同记录）'],
  [/^same code as row (\d+)$/i, (m) => `与第 ${m[1]} 行的代码相同`],
  [/^same number as row (\d+)$/i, (m) => `与第 ${m[1]} 行的证号相同`],
  [/^same (\w+) as row (\d+)$/i, (m) => `与第 ${m[2]} 行重复`],
  [/^outside your scope$/i, () => '超出您的管辖范围'],
  [/^unknown column$/i, () => '无法识别的列（请使用导出模板中的列名）'],
  [/^required column (.+?) \(([\w.]+)\) is missing$/i, (m) => `缺少必填列“${m[1]}”`],
  [/^no district brigade named (.*)$/i, (m) => (unquote(m[1]) === '' ? '未填写所属区' : `找不到名为“${unquote(m[1])}”的区执法大队`)],
  [/^no town (.*) in the district$/i, (m) => `所属区下没有街镇${quoted(m[1])}`],
  [/^no SOE group (.*)$/i, (m) => `找不到国有集团${quoted(m[1])}`],
  [/^no org unit (.+)$/i, (m) => (unquote(m[1]) === '' ? '未填写所属单位' : `找不到单位${quoted(m[1])}`)],
  [/^no such org unit$/i, () => '单位不存在'],
  [/^no such account$/i, () => '账号不存在'],
  [/^refers to a record that does not exist$/i, () => '引用的记录不存在'],
  [/^(.+) is not a number$/i, (m) => `${quoted(m[1])}不是有效的数字`],
  [/^(.+) is not a year$/i, (m) => `${quoted(m[1])}不是有效的年份`],
  [/^not a phone number$/i, () => '不是有效的电话号码（手机号 11 位，或座机如 021-12345678）'],
  // USCC (GB 32100-2015)
  [/^invalid unified social credit code: (.+)$/i, (m) => `无效（${translateFieldMessage(m[1])}）`],
  [/^must be 18 characters, got (\d+)$/i, (m) => `应为 18 位，当前 ${m[1]} 位`],
  [/^character (.+) at position (\d+) is not allowed$/i, (m) => `第 ${m[2]} 位字符${quoted(m[1])}不合法，不可使用 I、O、Z、S、V 及小写字母`],
  [/^check character should be (\S+), got (\S+)$/i, (m) => `校验位错误，末位应为 ${m[1]}，实际为 ${m[2]}`],
  // Lengths and ranges
  [/^at most (\d+) characters$/i, (m) => `不能超过 ${m[1]} 个字符`],
  [/^(\d+)[–-](\d+) characters$/i, (m) => `长度应为 ${m[1]}–${m[2]} 个字符`],
  [/^(\d+)[–-](\d+) letters, digits or '-'$/i, (m) => `应为 ${m[1]}–${m[2]} 位字母、数字或“-”`],
  [/^must be a longitude in (-?\d+)\.\.(-?\d+)$/i, (m) => `经度应在 ${m[1]} 到 ${m[2]} 之间`],
  [/^must be a latitude in (-?\d+)\.\.(-?\d+)$/i, (m) => `纬度应在 ${m[1]} 到 ${m[2]} 之间`],
  [/^longitude and latitude go together$/i, () => '经度和纬度须同时填写'],
  [/^years must be between (\d+) and (\d+)$/i, (m) => `年度应在 ${m[1]} 到 ${m[2]} 之间`],
  [/^at most (\d+) tags of at most (\d+) characters$/i, (m) => `标签最多 ${m[1]} 个，每个不超过 ${m[2]} 个字符`],
  [/^at most (\d+) rows per import$/i, (m) => `每次最多导入 ${m[1]} 行`],
  // Enumerations
  [/^must be one of (\d+)[–-](\d+)$/i, (m) => `应为 ${m[1]}–${m[2]} 之一`],
  [/^must be (\d+)[–-](\d+) or \*$/i, (m) => `应为 ${m[1]}–${m[2]} 之一或 *（全部行业）`],
  [/^must be operating, suspended or closed$/i, () => `应为${Object.values(ENTERPRISE_STATUS).join('、')}之一`],
  [/^must be active or inactive$/i, () => '应为在岗或离岗'],
  [/^must be corps, brigade, squad, town or soe_group$/i, () => `应为${Object.values(ORG_KIND_NAMES).join('、')}之一`],
  [/^must be a GB\/T 4754-2017 code such as (\S+)$/i, (m) => `应为 GB/T 4754-2017 行业代码，如 ${m[1]}`],
  [/^must be YYYY-MM-DD$/i, () => '日期格式应为 YYYY-MM-DD'],
  [/^must be RFC 3339 or YYYY-MM-DD$/i, () => '时间格式应为 RFC 3339 或 YYYY-MM-DD'],
  [/^must start with one of (.+)$/i, (m) => `必须以下列之一开头：${m[1]}`],
  [/^must start with (.+)$/i, (m) => `必须以 ${m[1]} 开头`],
  [/^must be one of (.+)$/i, (m) => `应为以下之一：${m[1]}`],
  // Org units
  [/^is not a district brigade$/i, () => '不是区执法大队'],
  [/^is not a town of the district$/i, () => '不是所属区下的街镇'],
  [/^is not an SOE group$/i, () => '不是国有集团'],
  [
    /^an? (\w+) cannot be placed under (\w+)$/i,
    (m) => (m[2] === 'nothing' ? `${KIND_NAMES[m[1]] ?? m[1]}必须有上级单位` : `${KIND_NAMES[m[1]] ?? m[1]}不能设在${KIND_NAMES[m[2]] ?? m[2]}之下`),
  ],
  // Accounts and applications
  [/^unknown role$/i, () => '角色不存在'],
  [/^unknown role (.+?)(?:; one of: .*)?$/i, (m) => `角色${quoted(m[1])}不存在`],
  [/^a district cannot apply for this role$/i, () => '区级单位不能申请该角色（该角色仅限总队）'],
  [/^the application is already (\w+)$/i, (m) => `该申请${APPLICATION_STATES[m[1]] ?? m[1]}，不能重复处理`],
  [/^the application is not pending$/i, () => '该申请已处理，不是待审核状态'],
  [/^you cannot disable your own account$/i, () => '不能停用当前登录的账号'],
  // Passwords
  [/^must be at least (\d+) characters$/i, (m) => `至少 ${m[1]} 位`],
  [/^must be at most (\d+) characters$/i, (m) => `不能超过 ${m[1]} 位`],
  [
    /^must contain at least (\d+) of: lowercase letters, uppercase letters, digits, symbols$/i,
    (m) => `须包含小写字母、大写字母、数字、符号中的至少 ${m[1]} 类`,
  ],
  [/^must not contain the username$/i, () => '不能包含用户名'],
  [/^is wrong$/i, () => '不正确'],
  [/^must differ from the old password$/i, () => '不能与原密码相同'],
  // Versions, sorting
  [/^required: the version the record was read at$/i, () => '缺少版本号，请刷新后重试'],
  [/^the record was changed by someone else; reload and try again$/i, () => '记录已被他人修改，请刷新后重试'],
  [/^unknown sort key (.+)$/i, (m) => `不支持的排序字段${quoted(m[1])}`],
];

// Whole-request messages (the top-level `message` of codes without a fixed text).
const MESSAGE_RULES: Rule[] = [
  [/^hazards are recorded while the inspection is in progress$/i, () => '检查进行中才能登记隐患'],
  [/^an inspection that recorded hazards cannot be cancelled; complete it$/i, () => '已登记隐患的检查不能取消，请完成检查'],
  [/^a rectification can be reported only while the hazard is being rectified$/i, () => '隐患处于整改中才能上报整改情况'],
  [/^only a hazard under rectification can be re-inspected$/i, () => '只有整改中或待复查的隐患才能复查'],
  [/^the penalty notice \(D15\) must be approved before the decision$/i, () => '须先审批行政处罚告知书，才能作出处罚决定'],
  [/^the penalty was already decided$/i, () => '已作出处罚决定'],
  [/^no penalty has been decided yet$/i, () => '尚未作出处罚决定'],
  [/^a case transfer \(D33\) needs an approved transfer approval form \(D32\) first$/i, () => '案件移送书须先有已审批的案件移送审批表'],
  [/^a criminal referral needs an approved transfer approval form \(D32\)$/i, () => '移送司法机关须先审批案件移送审批表'],
  [/^decide the penalty or refer the case before closing$/i, () => '结案前须作出处罚决定或移送'],
  [/^every document must be approved before closing; not approved: (.+)$/i, (m) => `结案前须审批全部文书，尚未审批：${m[1]}`],
  [/^the filing was already acknowledged$/i, () => '该报备已确认'],
  [/^the document is already approved$/i, () => '该文书已审批'],
  [/^.*only while the inspection is in progress$/i, () => '检查已完成或已取消'],
  [/^only a case awaiting (filing|closing) approval can be decided$/i, (m) => (m[1] === 'filing' ? '案件不在立案审批中' : '案件不在结案审批中')],
  [/^(documents are (drafted|approved)|a (penalty|payment|referral) is (decided|recorded|made)|closing is requested) while the case is open$/i, () => '案件办理中才能执行此操作'],
  [/^no footage of this recording in that range$/i, () => '该时段没有录像'],
  [/^segment (\d+) of the recording does not match its recorded digest.*$/i, (m) => `序号 ${m[1]} 的录像片段与登记的摘要不符，可能已被篡改或损坏`],
  [/^the file is empty$/i, () => '文件为空'],
  [/^the file has no header row$/i, () => '文件没有表头行'],
  [/^the file has no data rows$/i, () => '文件没有数据行（表头下方为空）'],
  [/^malformed CSV: (.+)$/i, (m) => `CSV 文件格式错误，无法读取${detail(m[1])}`],
  [/^not a readable \.xlsx file: (.+)$/i, (m) => `不是可读取的 Excel（.xlsx）文件${detail(m[1])}`],
  [/^the workbook has no sheet$/i, () => 'Excel 文件中没有工作表'],
  [/^the account is disabled$/i, () => '账号已停用，请联系管理员'],
  [/^(?:too many wrong passwords: )?the account is locked until (\S+)/i, (m) => `密码错误次数过多，账号已锁定，请于 ${fmtDateTime(m[1].trim())} 后重试，或联系管理员解锁`],
  [/^wrong username or password(?:; (\d+) more wrong attempts lock the account)?$/i, (m) => (m[1] && m[1] !== '0' ? `用户名或密码错误，再错 ${m[1]} 次账号将被锁定` : '用户名或密码错误')],
  [/^too many login attempts from this address; try again in (\d+) s$/i, (m) => `登录尝试过于频繁，请 ${m[1]} 秒后再试`],
  [/^login required$/i, () => '尚未登录或登录已失效，请重新登录'],
  [/^invalid session token$/i, () => '登录已失效，请重新登录'],
  [/^invalid or expired media token$/i, () => '媒体访问令牌无效或已过期'],
  [/^this session ended because the account logged in elsewhere$/i, () => '账号已在其他地方登录，本会话已结束'],
  [/^this session ended after being idle$/i, () => '长时间未操作，会话已结束，请重新登录'],
  [/^this session has ended$/i, () => '会话已结束，请重新登录'],
  [/^request body exceeds the size limit$/i, () => '提交的内容超过服务器允许的大小上限'],
  [/^expected Content-Type: application\/json$/i, () => '请求内容类型错误（应为 application/json）'],
  [/^internal server error.*$/i, () => '服务器内部错误，请联系管理员'],
  [/^(?:the )?org unit is outside your scope$/i, () => '所选单位超出您的管辖范围'],
  [/^the district, town or SOE group is outside your scope$/i, () => '所选区、街镇或国有集团超出您的管辖范围'],
  [/^only the corps approves accounts$/i, () => '只有总队可以审批开通账号'],
  [/^only the corps decides applications$/i, () => '只有总队可以审核账号申请'],
  [/^role (\S+) may not do this$/i, (m) => `当前角色（${ROLE_NAMES[m[1]] ?? m[1]}）无权执行此操作`],
  [/^(.+) not found$/i, (m) => (m[1] === 'route' ? '请求的接口不存在' : `${NOT_FOUND_WHAT[m[1]] ?? '记录'}不存在或已被删除`)],
];

/** "：原文" detail for parser errors (kept in English: they quote the file). */
function detail(s: string): string {
  return s ? `（原文：${s}）` : '';
}

function applyRules(rules: Rule[], msg: string): string | null {
  for (const [re, fn] of rules) {
    const m = re.exec(msg);
    if (m) return fn(m);
  }
  return null;
}

/** A field message (`errors[].message`) in Chinese; "（原文）…" when no pattern matches. */
export function translateFieldMessage(message: string | null | undefined, _field?: string): string {
  const msg = (message ?? '').trim();
  if (msg === '') return '有误';
  const hit = applyRules(FIELD_RULES, msg) ?? applyRules(MESSAGE_RULES, msg);
  if (hit !== null) return localizeTimes(hit);
  // "field: message" (a message that names its field).
  const named = /^([a-z_]+(?:\[\d+\])?): (.+)$/.exec(msg);
  if (named) return `${fieldLabel(named[1])}：${translateFieldMessage(named[2])}`;
  return isChinese(msg) ? localizeTimes(msg) : original(msg);
}

/** A whole-request message (e.g. of `bad_request`) in Chinese, or null when no pattern knows it. */
export function translateMessage(message: string | null | undefined): string | null {
  const msg = (message ?? '').trim();
  if (msg === '') return null;
  const hit = applyRules(MESSAGE_RULES, msg) ?? applyRules(FIELD_RULES, msg);
  if (hit !== null) return localizeTimes(hit);
  return isChinese(msg) ? localizeTimes(msg) : null;
}

// ---------------------------------------------------------------------------------------------
// Error bodies

export interface FieldProblem {
  row?: number | null;
  field: string;
  message: string;
}

/** `errors: [{row?, field, message}]` of an error body. */
export function fieldProblems(body: Record<string, unknown> | null | undefined): FieldProblem[] {
  const list = body?.errors;
  if (!Array.isArray(list)) return [];
  const out: FieldProblem[] = [];
  for (const item of list) {
    if (!item || typeof item !== 'object') continue;
    const { row, field, message } = item as { row?: unknown; field?: unknown; message?: unknown };
    out.push({
      row: typeof row === 'number' ? row : null,
      field: typeof field === 'string' ? field : '',
      message: typeof message === 'string' ? message : '',
    });
  }
  return out;
}

/** "企业名称：不能为空；统一社会信用代码：…" (at most `max`, then "等 N 处"). */
export function listProblems(problems: FieldProblem[], labels?: Labels, max = 3): string {
  const parts = problems.slice(0, max).map((p) => {
    const where = p.row ? `第 ${p.row} 行 ` : p.row === 0 ? '表头 ' : '';
    return `${where}${fieldLabel(p.field, labels)}：${translateFieldMessage(p.message, p.field)}`;
  });
  return parts.join('；') + (problems.length > max ? `等 ${problems.length} 处` : '');
}

/**
 * The field named by a serde message of `invalid_body` / `invalid_query`, with a Chinese
 * description: "Failed to deserialize …: lon: invalid type: string \"x\", expected f64 at line 1 column 9".
 */
export function serdeProblem(message: string): { field: string | null; text: string } {
  let s = message
    .trim()
    .replace(/^Failed to deserialize (?:the JSON body into the target type|query string)\s*:\s*/i, '')
    .replace(/ at line \d+ column \d+$/i, '');
  let m = /^missing field `([^`]+)`/i.exec(s);
  if (m) return { field: m[1], text: '缺少该字段' };
  m = /^unknown field `([^`]+)`/i.exec(s);
  if (m) return { field: m[1], text: '不支持的字段' };
  let field: string | null = null;
  m = /^([A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_]\w*)*): (.+)$/.exec(s);
  if (m) {
    field = m[1].replace(/\[\d+\]$/, '').split('.').pop() ?? m[1];
    s = m[2];
  }
  let text: string;
  if (/^invalid type/i.test(s)) text = '类型不正确';
  else if ((m = /^unknown variant `([^`]*)`/i.exec(s))) text = `不支持的取值“${m[1]}”`;
  else if (/^invalid (?:value|length)/i.test(s)) text = '取值不正确';
  else if (/invalid digit|invalid float|cannot parse|number too large|too small/i.test(s)) text = '不是有效的数字';
  else if (/^premature end|EOF while parsing/i.test(s)) text = '数据不完整';
  else text = translateFieldMessage(s);
  return { field, text };
}

/** "缺少字段“企业名称”" / "“经度”类型不正确" for a serde message. */
function serdeSentence(message: string, labels?: Labels): string {
  const p = serdeProblem(message);
  if (!p.field) return p.text;
  if (p.text === '缺少该字段') return `缺少字段“${fieldLabel(p.field, labels)}”`;
  if (p.text === '不支持的字段') return `不支持的字段“${p.field}”`;
  return `“${fieldLabel(p.field, labels)}”${p.text}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: '请求参数有误',
  401: '登录已失效，请重新登录',
  403: '无权执行此操作',
  404: '记录不存在或已被删除',
  405: '不支持该请求方法',
  409: '记录已被他人修改，请刷新后重试',
  413: '提交的内容过大',
  415: '不支持的内容类型',
  422: '提交的数据未通过校验',
  423: '账号已锁定，请稍后重试',
  429: '请求过于频繁，请稍后再试',
  500: '服务器内部错误，请联系管理员',
  502: '服务暂不可用（网关错误）',
  503: '服务暂不可用，请稍后再试',
  504: '服务响应超时，请稍后再试',
};

const SESSION_END: Labels = {
  superseded: '账号已在其他地方登录，本会话已结束',
  idle: '长时间未操作，会话已结束，请重新登录',
  disabled: '账号已被停用，会话已结束',
  password_reset: '密码已被管理员重置，请使用新密码重新登录',
  password_change: '密码已修改，请使用新密码重新登录',
  password_changed: '密码已修改，请使用新密码重新登录',
  logout: '已退出登录，请重新登录',
};

/**
 * The Chinese sentence for an API error: by `code` (docs/api.md), using the extra members of the
 * body (`attempts_left`, `locked_until`, `reason`, `errors`). `labels` name the fields.
 */
export function describeError(status: number, code: string, body: Record<string, unknown>, labels?: Labels): string {
  const message = typeof body.message === 'string' ? body.message : '';
  const problems = fieldProblems(body);
  switch (code) {
    case 'invalid_credentials': {
      const left = body.attempts_left;
      return typeof left === 'number' && left > 0 ? `用户名或密码错误，再错 ${left} 次账号将被锁定` : '用户名或密码错误';
    }
    case 'account_locked': {
      let until = typeof body.locked_until === 'string' ? body.locked_until : '';
      if (!until) until = /locked until (\S+)/i.exec(message)?.[1] ?? '';
      return until ? `密码错误次数过多，账号已锁定，请于 ${fmtDateTime(until)} 后重试，或联系管理员解锁` : '密码错误次数过多，账号已锁定，请稍后重试或联系管理员解锁';
    }
    case 'session_ended': {
      const reason = typeof body.reason === 'string' ? body.reason : '';
      return SESSION_END[reason] ?? '会话已结束，请重新登录';
    }
    case 'unauthenticated':
      return translateMessage(message) ?? '登录已失效，请重新登录';
    case 'account_disabled':
      return '账号已停用，请联系管理员';
    case 'password_change_required':
      return '请先修改密码后再使用系统';
    case 'forbidden': {
      const why = translateMessage(message);
      if (!why || /无权|权限/.test(why)) return why ?? '无权执行此操作';
      return `无权执行此操作：${why}`;
    }
    case 'not_found':
      return translateMessage(message) ?? '记录不存在或已被删除';
    case 'method_not_allowed':
      return '不支持该请求方法';
    case 'version_conflict':
      return '记录已被他人修改，请刷新后重试';
    case 'duplicate': {
      const fields = [...new Set(problems.map((p) => p.field).filter(Boolean))];
      return fields.length ? `${fields.map((f) => fieldLabel(f, labels)).join('、')}已存在，不能重复` : '记录已存在，不能重复';
    }
    case 'body_too_large':
      return '提交的内容超过服务器允许的大小上限';
    case 'unsupported_media_type':
      return '不支持的内容类型';
    case 'import_rejected': {
      const rows = new Set(problems.filter((p) => p.row).map((p) => p.row)).size;
      const header = problems.some((p) => p.row === 0);
      const parts: string[] = [];
      if (header) parts.push('文件表头有误');
      if (rows) parts.push(`${rows} 行数据有错误`);
      return `${parts.join('，') || '文件有误'}，未导入任何数据`;
    }
    case 'malformed_json':
      return '请求数据不是有效的 JSON';
    case 'invalid_body':
      return `提交的数据格式有误：${serdeSentence(message, labels)}`;
    case 'invalid_query':
      return `查询参数有误：${serdeSentence(message, labels)}`;
    case 'validation_failed':
      return problems.length ? `提交的数据未通过校验：${listProblems(problems, labels)}` : '提交的数据未通过校验';
    case 'internal':
      return '服务器内部错误，请联系管理员';
    case 'bad_request': {
      const t = translateMessage(message);
      return t ?? (message ? `请求有误：${original(message)}` : '请求参数有误');
    }
    case 'invalid_state': {
      const why = translateMessage(message.replace(/^not allowed while the \S+ is \S+: /, ''));
      return `当前状态下不能执行此操作${why ? `：${why}` : ''}`;
    }
    case 'over_cap':
      return `该企业本年度已检查 ${String(body.visits ?? '')} 次，已达“综合查一次”上限 ${String(body.cap ?? '')} 次，须填写超限检查报备理由`;
    case 'too_many_requests':
    case 'rate_limited':
      return '请求过于频繁，请稍后再试';
    case 'too_many_attempts': {
      const secs = typeof body.retry_after_secs === 'number' ? body.retry_after_secs : null;
      return secs ? `登录尝试过于频繁，请 ${secs} 秒后再试` : '登录尝试过于频繁，请稍后再试';
    }
    case 'too_many_batches':
      return '您已有批量打印正在进行，请等其完成（或下载后）再开始新的批量打印';
    case 'busy':
      return '服务器正忙（转码或截图任务已满），请稍后重试';
    case 'timed_out':
      return '服务器处理超时，请稍后重试';
    case 'malformed_uri':
      return '请求地址含有无法解析的字符';
    case 'uri_too_long':
      return '请求地址过长';
    default: {
      const t = translateMessage(message);
      if (t) return t;
      const base = STATUS_TEXT[status] ?? `请求失败（HTTP ${status}）`;
      return message && !/^<|^\s*$/.test(message) ? `${base}${message.length <= 200 ? `：${original(message)}` : ''}` : base;
    }
  }
}

/** Chinese text for anything thrown: API errors carry it already; other errors are named. */
export function errorText(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e && 'status' in e && e instanceof Error) return e.message;
  if (e instanceof DOMException && e.name === 'AbortError') return '请求已取消';
  if (e instanceof SyntaxError) return '服务器返回的数据格式不正确';
  if (e instanceof TypeError && /fetch|network/i.test(e.message)) return '无法连接服务器，请检查网络';
  const msg = e instanceof Error ? e.message : String(e ?? '');
  if (!msg) return '未知错误';
  return translateMessage(msg) ?? (isChinese(msg) ? msg : original(msg));
}

/** Chinese names of the audit log's action codes (docs/api.md). */
export const AUDIT_ACTIONS: Record<string, string> = {
  'auth.login': '登录',
  'auth.logout': '退出登录',
  'auth.lockout': '账号锁定',
  'auth.session_expired': '会话超时',
  'auth.password_change': '修改密码',
  'account.create': '创建账号',
  'account.unlock': '解锁账号',
  'account.disable': '停用账号',
  'account.enable': '启用账号',
  'account.reset_password': '重置密码',
  'account_application.file': '提交账号申请',
  'account_application.approve': '通过账号申请',
  'account_application.reject': '驳回账号申请',
  'org_unit.create': '新增组织',
  'org_unit.update': '修改组织',
  'enterprise.create': '新增企业',
  'enterprise.update': '修改企业',
  'enterprise.delete': '删除企业',
  'enterprise.import': '导入企业',
  'enterprise.export': '导出企业',
  'enterprise.read': '查看企业',
  'officer.create': '新增执法人员',
  'officer.update': '修改执法人员',
  'officer.delete': '删除执法人员',
  'officer.import': '导入执法人员',
  'officer.export': '导出执法人员',
  'inspection_item.create': '新增检查事项',
  'inspection_item.update': '修改检查事项',
  'audit.query': '查询审计日志',
  'dispatch.assign': '派遣',
  'dispatch.arrive': '到场',
  'dispatch.clear': '解除派遣',
  'dispatch.locate': '位置查询',
  'dispatch.track_request': '临时跟踪',
  'geofence.create': '新增电子围栏',
  'geofence.delete': '删除电子围栏',
  'vehicle.create': '新增车辆',
  'vehicle.update': '修改车辆',
  'vehicle.delete': '删除车辆',
  'vehicle.rebind': '允许终端重新绑定',
  'vehicle.terminal_rebind': '终端重新绑定',
  'vehicle.terminal_register': '终端注册',
  'vehicle.terminal_register_refused': '终端重复注册被拒绝',
  'recorder.create': '登记执法记录仪',
  'recorder.update': '修改执法记录仪',
  'stream.view': '查看视频',
  'stream.view_end': '结束查看视频',
  'recording.play': '回放录像',
  'recording.export': '导出录像',
  'recording.link': '关联检查',
  'recording.unlink': '取消关联/忽略建议',
  'recording.hold': '法律保全',
  'recording.start': '开始录像',
  'recording.stop': '停止录像',
  'recording.retention': '设置录像保存期限',
  'recorder.record_always': '设置始终录像',
  'inspection.evidence_package': '导出证据包',
};

/** An audit action as "中文名（code）", or the code alone when it has no name yet. */
export function auditActionLabel(code: string): string {
  const name = AUDIT_ACTIONS[code];
  return name ? `${name}（${code}）` : code;
}
