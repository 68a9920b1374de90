// Form builder with client-side validation and server error display.

import { ApiError } from '../api';
import { h, type Child } from '../dom';
import { describeError, errorText, fieldLabel, fieldProblems, listProblems, serdeProblem, translateFieldMessage, type Labels } from '../i18n';

export type FieldType =
  | 'text'
  | 'password'
  | 'number'
  | 'select'
  | 'textarea'
  | 'checkbox'
  | 'date'
  | 'month'
  | 'datetime-local'
  | 'tel';

export interface FieldSpec {
  name: string;
  label: string;
  type?: FieldType;
  options?: { value: string; label: string }[];
  /** Suggestions for a text input (<datalist>). */
  suggestions?: { value: string; label?: string }[];
  required?: boolean;
  placeholder?: string;
  hint?: string;
  value?: string | number | boolean | null;
  readonly?: boolean;
  autocomplete?: string;
  testid?: string;
  /** Grid columns taken (forms use a 3-column grid; 3 = full width). */
  span?: 1 | 2 | 3;
  maxlength?: number;
  step?: string;
  /** Returns an error message, or null when valid. Runs after the `required` check. */
  validate?: (value: string, values: Record<string, string>) => string | null;
  /** Normalise the value on blur (e.g. uppercase). */
  normalize?: (value: string) => string;
  onChange?: (value: string, form: Form) => void;
}

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

let uid = 0;
const SUMMARY = '请先更正表单中标红的内容';

export class Form {
  readonly el: HTMLFormElement;
  readonly errorBox: HTMLDivElement;
  readonly submitButton: HTMLButtonElement;
  private readonly controls = new Map<string, Control>();
  private readonly errors = new Map<string, HTMLElement>();
  private readonly specs = new Map<string, FieldSpec>();
  private readonly fieldWrappers = new Map<string, HTMLElement>();
  private submitHandler: ((values: Record<string, string>) => Promise<void> | void) | null = null;
  /** Every field read-only and no submit button (the account may not write). */
  readonly readonly: boolean;
  private readonly fieldLabels: Labels;

  constructor(
    fields: FieldSpec[],
    opts: {
      submitLabel?: string;
      submitTestid?: string;
      errorTestid?: string;
      columns?: 1 | 2 | 3;
      extraButtons?: Child[];
      testid?: string;
      /** Show the values only: fields read-only, no submit button. */
      readonly?: boolean;
      /** Chinese names of server fields that are not fields of this form (for error summaries). */
      fieldLabels?: Labels;
    } = {},
  ) {
    this.readonly = Boolean(opts.readonly);
    this.fieldLabels = opts.fieldLabels ?? {};
    this.errorBox = h('div', { class: 'form-error', role: 'alert', testid: opts.errorTestid ?? 'form-error', hidden: true });
    this.submitButton = h('button', { type: 'submit', class: 'btn primary', testid: opts.submitTestid }, opts.submitLabel ?? '保存');
    const grid = h('div', { class: `form-grid cols-${opts.columns ?? 3}` });
    for (const f of fields) grid.appendChild(this.field(this.readonly ? { ...f, readonly: true, required: false, suggestions: undefined, placeholder: undefined, hint: undefined } : f));
    const extra = (opts.extraButtons ?? []).filter(Boolean);
    this.el = h(
      'form',
      { class: `form${this.readonly ? ' readonly' : ''}`, novalidate: true, testid: opts.testid, 'data-readonly': this.readonly ? 'true' : undefined },
      this.errorBox,
      grid,
      this.readonly
        ? extra.length
          ? h('div', { class: 'form-actions' }, extra)
          : null
        : h('div', { class: 'form-actions' }, this.submitButton, extra),
    );
    this.el.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.submit();
    });
  }

  private field(f: FieldSpec): HTMLElement {
    const id = `f${++uid}-${f.name}`;
    const type = f.type ?? 'text';
    let control: Control;
    let datalist: HTMLDataListElement | null = null;
    const common = {
      id,
      name: f.name,
      testid: f.testid,
      readonly: f.readonly,
      disabled: f.readonly && (type === 'select' || type === 'checkbox'),
      placeholder: f.placeholder,
      autocomplete: f.autocomplete,
      maxlength: f.maxlength,
      'aria-required': f.required ? 'true' : undefined,
    };
    if (type === 'select') {
      const sel = h('select', common);
      for (const o of f.options ?? []) sel.appendChild(h('option', { value: o.value }, o.label));
      sel.value = f.value === null || f.value === undefined ? '' : String(f.value);
      control = sel;
    } else if (type === 'textarea') {
      control = h('textarea', { ...common, rows: 3 });
      control.value = f.value === null || f.value === undefined ? '' : String(f.value);
    } else if (type === 'checkbox') {
      control = h('input', { ...common, type: 'checkbox' });
      control.checked = Boolean(f.value);
    } else {
      const input = h('input', { ...common, type, step: f.step });
      input.value = f.value === null || f.value === undefined ? '' : String(f.value);
      // An empty list too: pages fill it as the user types (search-as-you-type pickers).
      if (f.suggestions) {
        const listId = `${id}-list`;
        input.setAttribute('list', listId);
        datalist = h('datalist', { id: listId });
        for (const s of f.suggestions) datalist.appendChild(h('option', { value: s.value }, s.label ?? ''));
      }
      control = input;
    }
    this.controls.set(f.name, control);
    this.specs.set(f.name, f);
    const err = h('div', { class: 'field-error', id: `${id}-err` });
    this.errors.set(f.name, err);
    control.setAttribute('aria-describedby', `${id}-err`);

    // Re-check a field that shows an error while the user corrects it (on input, so the message
    // is gone before the next click and the layout does not shift under the pointer).
    const recheck = () => {
      if (!err.textContent) return;
      this.validateField(f.name);
      this.maybeClearSummary();
    };
    control.addEventListener('input', recheck);
    control.addEventListener('blur', () => {
      if (f.normalize && !(control instanceof HTMLSelectElement) && control.type !== 'checkbox') {
        const n = f.normalize(control.value);
        if (n !== control.value) control.value = n;
      }
      recheck();
    });
    control.addEventListener('change', () => {
      recheck();
      f.onChange?.(this.value(f.name), this);
    });

    let wrapper: HTMLElement;
    if (type === 'checkbox') {
      wrapper = h(
        'div',
        { class: `field span-${f.span ?? 1} field-checkbox` },
        h('label', { for: id }, control, ' ', f.label),
        f.hint ? h('div', { class: 'field-hint' }, f.hint) : null,
        err,
      );
    } else {
      wrapper = h(
        'div',
        { class: `field span-${f.span ?? 1}` },
        h('label', { for: id, class: f.required ? 'required' : undefined }, f.label),
        control,
        datalist,
        f.hint ? h('div', { class: 'field-hint' }, f.hint) : null,
        err,
      );
    }
    this.fieldWrappers.set(f.name, wrapper);
    return wrapper;
  }

  control(name: string): Control {
    const c = this.controls.get(name);
    if (!c) throw new Error(`no field ${name}`);
    return c;
  }

  value(name: string): string {
    const c = this.control(name);
    if (c instanceof HTMLInputElement && c.type === 'checkbox') return c.checked ? 'true' : '';
    return c.value;
  }

  checked(name: string): boolean {
    const c = this.control(name);
    return c instanceof HTMLInputElement && c.checked;
  }

  setValue(name: string, v: string | boolean): void {
    const c = this.control(name);
    if (c instanceof HTMLInputElement && c.type === 'checkbox') c.checked = Boolean(v);
    else c.value = String(v);
  }

  /** Replace the options of a select field, keeping the value when still present. */
  setOptions(name: string, options: { value: string; label: string }[]): void {
    const c = this.control(name);
    if (!(c instanceof HTMLSelectElement)) return;
    const prev = c.value;
    c.replaceChildren(...options.map((o) => h('option', { value: o.value }, o.label)));
    c.value = options.some((o) => o.value === prev) ? prev : (options[0]?.value ?? '');
  }

  setHidden(name: string, hidden: boolean): void {
    const w = this.fieldWrappers.get(name);
    if (w) w.hidden = hidden;
  }

  values(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of this.controls.keys()) out[name] = this.value(name);
    return out;
  }

  setFieldError(name: string, msg: string | null): void {
    const err = this.errors.get(name);
    const c = this.controls.get(name);
    if (!err || !c) return;
    err.textContent = msg ?? '';
    c.classList.toggle('invalid', Boolean(msg));
    c.setAttribute('aria-invalid', msg ? 'true' : 'false');
  }

  private validateField(name: string): boolean {
    const spec = this.specs.get(name);
    const w = this.fieldWrappers.get(name);
    if (!spec || (w && w.hidden)) {
      this.setFieldError(name, null);
      return true;
    }
    const v = this.value(name);
    let msg: string | null = null;
    if (spec.required && v.trim() === '') msg = spec.type === 'select' ? `请选择${spec.label}` : `请填写${spec.label}`;
    else if (spec.validate) msg = spec.validate(v, this.values());
    this.setFieldError(name, msg);
    return msg === null;
  }

  /** Validate all fields; focuses the first invalid one. */
  validate(): boolean {
    let first: Control | null = null;
    for (const name of this.controls.keys()) {
      const spec = this.specs.get(name);
      const c = this.control(name);
      if (spec?.normalize && !(c instanceof HTMLSelectElement)) c.value = spec.normalize(c.value);
      if (!this.validateField(name) && !first) first = c;
    }
    if (first) {
      this.showError(SUMMARY);
      first.focus();
      return false;
    }
    this.clearError();
    return true;
  }

  /** Hide the "please correct" summary once no field shows an error any more. */
  private maybeClearSummary(): void {
    if (this.errorBox.textContent !== SUMMARY) return;
    for (const e of this.errors.values()) if (e.textContent) return;
    this.clearError();
  }

  showError(msg: string): void {
    this.errorBox.textContent = msg;
    this.errorBox.hidden = false;
  }

  clearError(): void {
    this.errorBox.textContent = '';
    this.errorBox.hidden = true;
  }

  /** The Chinese name of a field: the form's own label (without "（可选）" etc.), else the known labels. */
  labelOf(name: string): string {
    const spec = this.specs.get(name);
    if (spec) return spec.label.replace(/（[^）]*）$/, '').trim() || spec.label;
    return fieldLabel(name, this.fieldLabels);
  }

  private labels(): Labels {
    const out: Labels = { ...this.fieldLabels };
    for (const name of this.specs.keys()) out[name] = this.labelOf(name);
    return out;
  }

  /**
   * Show an API error next to the form, in Chinese: `errors: [{field, message}]` go onto the fields
   * they name (translated); the summary above the form names what is not shown at a field.
   */
  showServerError(e: unknown): void {
    if (!(e instanceof ApiError)) {
      this.showError(errorText(e));
      return;
    }
    const labels = this.labels();
    const problems = fieldProblems(e.body);
    const elsewhere = problems.filter((p) => {
      if (!this.controls.has(p.field) || this.fieldWrappers.get(p.field)?.hidden) return true;
      this.setFieldError(p.field, translateFieldMessage(p.message, p.field));
      return false;
    });
    if (e.code === 'invalid_body' || e.code === 'invalid_query') {
      const p = serdeProblem(e.serverMessage);
      if (p.field && this.controls.has(p.field)) this.setFieldError(p.field, p.text);
    }
    if (e.code === 'validation_failed' && problems.length) {
      this.showError(
        elsewhere.length
          ? `提交的数据未通过校验：${listProblems(elsewhere, labels)}`
          : '提交的数据未通过校验，请更正表单中标红的内容',
      );
      return;
    }
    let msg = describeError(e.status, e.code, e.body, labels);
    if (e.status >= 500 && e.requestId) msg += `（请求编号：${e.requestId}）`;
    this.showError(msg);
  }

  onSubmit(handler: (values: Record<string, string>) => Promise<void> | void): this {
    this.submitHandler = handler;
    return this;
  }

  async submit(): Promise<void> {
    if (this.readonly || !this.submitHandler || this.submitButton.disabled) return;
    if (!this.validate()) return;
    this.submitButton.disabled = true;
    this.el.classList.add('busy');
    try {
      await this.submitHandler(this.values());
    } catch (e) {
      this.showServerError(e);
    } finally {
      this.submitButton.disabled = false;
      this.el.classList.remove('busy');
    }
  }
}

/** Trimmed string or null. */
export function orNull(s: string | undefined): string | null {
  const t = (s ?? '').trim();
  return t === '' ? null : t;
}

export function numOrNull(s: string | undefined): number | null {
  const t = (s ?? '').trim();
  return t === '' ? null : Number(t);
}
