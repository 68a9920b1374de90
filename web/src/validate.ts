// Client-side validation rules. The server validates again; these give early feedback.

export const USCC_ALPHABET = '0123456789ABCDEFGHJKLMNPQRTUWXY';
const USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/** GB 32100-2015 check character for the first 17 characters, or null if a character is invalid. */
export function usccCheckChar(first17: string): string | null {
  if (first17.length !== 17) return null;
  let sum = 0;
  for (let i = 0; i < 17; i++) {
    const v = USCC_ALPHABET.indexOf(first17[i]);
    if (v < 0) return null;
    sum += v * USCC_WEIGHTS[i];
  }
  return USCC_ALPHABET[(31 - (sum % 31)) % 31];
}

/** Returns an error message (zh-CN) or null when the USCC is valid. */
export function checkUscc(raw: string): string | null {
  const s = raw.trim().toUpperCase();
  if (s === '') return '请填写统一社会信用代码';
  if (s.length !== 18) return `统一社会信用代码应为 18 位（当前 ${s.length} 位）`;
  for (let i = 0; i < 18; i++) {
    if (!USCC_ALPHABET.includes(s[i])) return `第 ${i + 1} 位字符“${s[i]}”不合法（不可使用 I、O、Z、S、V）`;
  }
  const expected = usccCheckChar(s.slice(0, 17));
  if (expected !== s[17]) return `校验位错误：末位应为 ${expected}`;
  return null;
}

/** Password policy: at least 8 characters and at least 3 of: lowercase, uppercase, digit, symbol. */
export function checkPassword(pw: string): string | null {
  if (pw.length < 8) return '密码至少 8 位';
  let classes = 0;
  if (/[a-z]/.test(pw)) classes++;
  if (/[A-Z]/.test(pw)) classes++;
  if (/[0-9]/.test(pw)) classes++;
  if (/[^A-Za-z0-9]/.test(pw)) classes++;
  if (classes < 3) return '密码须包含小写字母、大写字母、数字、符号中的至少 3 类';
  return null;
}

/** A random password that satisfies checkPassword (for temporary passwords). */
export function generatePassword(len = 12): string {
  const sets = ['abcdefghijkmnpqrstuvwxyz', 'ABCDEFGHJKLMNPQRSTUVWXYZ', '23456789', '!@#$%&*?-_'];
  const all = sets.join('');
  const rnd = (n: number) => {
    const a = new Uint32Array(1);
    crypto.getRandomValues(a);
    return a[0] % n;
  };
  const chars = sets.map((s) => s[rnd(s.length)]);
  while (chars.length < len) chars.push(all[rnd(all.length)]);
  for (let i = chars.length - 1; i > 0; i--) {
    const j = rnd(i + 1);
    [chars[i], chars[j]] = [chars[j], chars[i]];
  }
  return chars.join('');
}

/** Mobile (1xxxxxxxxxx), landline (区号-号码[-分机]) or 400/800 service numbers. */
export function checkPhone(raw: string): string | null {
  const s = raw.trim();
  if (s === '') return null;
  if (/^1[3-9]\d{9}$/.test(s)) return null;
  if (/^0\d{2,3}-?\d{7,8}(-\d{1,6})?$/.test(s)) return null;
  if (/^[48]00-?\d{3}-?\d{4}$/.test(s)) return null;
  return '电话格式不正确（手机号 11 位，或座机如 021-12345678）';
}

export function checkNumberRange(raw: string, min: number, max: number, name: string): string | null {
  const s = raw.trim();
  if (s === '') return null;
  const n = Number(s);
  if (!Number.isFinite(n)) return `${name}必须是数字`;
  if (n < min || n > max) return `${name}应在 ${min} 到 ${max} 之间`;
  return null;
}

/** "2023, 2024，2025" → [2023, 2024, 2025]; returns an error message instead on bad input. */
export function parseYearList(raw: string): number[] | string {
  const s = raw.trim();
  if (s === '') return [];
  const out: number[] = [];
  for (const part of s.split(/[,，、\s]+/)) {
    if (part === '') continue;
    if (!/^\d{4}$/.test(part)) return `“${part}”不是有效年份`;
    const y = Number(part);
    if (y < 2000 || y > 2100) return `年份 ${y} 超出范围（2000–2100）`;
    if (!out.includes(y)) out.push(y);
  }
  return out.sort((a, b) => a - b);
}

/** "a, b，c" → ["a","b","c"] */
export function parseTagList(raw: string): string[] {
  const out: string[] = [];
  for (const p of raw.split(/[,，、]+/)) {
    const t = p.trim();
    if (t && !out.includes(t)) out.push(t);
  }
  return out;
}

export function checkUsername(raw: string): string | null {
  const s = raw.trim();
  if (s === '') return '请填写用户名';
  if (!/^[A-Za-z0-9_.@-]{3,64}$/.test(s)) return '用户名为 3–64 位字母、数字或 _ . @ -';
  return null;
}

export function required(raw: string, name: string): string | null {
  return raw.trim() === '' ? `请填写${name}` : null;
}
