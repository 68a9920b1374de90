// Minimal DOM helpers: no framework, just typed element construction.

export type Child = Node | string | number | null | undefined | false | Child[];

export type Attrs = {
  [key: string]:
    | string
    | number
    | boolean
    | null
    | undefined
    | EventListener
    | ((ev: any) => void)
    | Partial<CSSStyleDeclaration>;
};

/** Create an element. `on*` attributes become listeners, `class`/`style`/`dataset` are handled, booleans toggle. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2).toLowerCase(), v as EventListener);
      } else if (k === 'style' && typeof v === 'object') {
        Object.assign(el.style, v);
      } else if (k === 'class') {
        el.className = String(v);
      } else if (k === 'testid') {
        el.setAttribute('data-testid', String(v));
      } else if (k === 'value' && 'value' in el) {
        (el as unknown as HTMLInputElement).value = String(v);
      } else if (k === 'checked' && el instanceof HTMLInputElement) {
        el.checked = Boolean(v);
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else if (c instanceof Node) parent.appendChild(c);
    else parent.appendChild(document.createTextNode(String(c)));
  }
}

/** Replace all children of `el`. */
export function mount(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export function text(s: string | number | null | undefined): string {
  return s === null || s === undefined ? '' : String(s);
}

/** Build a <select> from options; `value` preselects. */
export function select(
  options: { value: string; label: string }[],
  attrs: Attrs = {},
  value = '',
): HTMLSelectElement {
  const el = h('select', attrs);
  for (const o of options) {
    const opt = h('option', { value: o.value }, o.label);
    if (o.value === value) opt.selected = true;
    el.appendChild(opt);
  }
  el.value = value;
  return el;
}
