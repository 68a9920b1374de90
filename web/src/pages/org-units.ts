// 组织架构 — tree of org units; admins add child units.

import { api } from '../api';
import { h, mount } from '../dom';
import { ORG_KIND_NAMES, label } from '../format';
import { pageHeader, setTitle } from '../layout';
import type { RouteContext } from '../router';
import { ORG_UNIT_FIELDS } from '../i18n';
import { can, loadOrgUnits, session } from '../session';
import type { OrgKind, OrgUnit } from '../types';
import { Form } from '../ui/form';
import { errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { errMsg } from './list-util';

/** Which kinds may sit under which (corps → brigade / SOE group; brigade → squad / town). */
const CHILD_KINDS: Record<OrgKind, OrgKind[]> = {
  corps: ['brigade', 'soe_group'],
  brigade: ['squad', 'town'],
  squad: [],
  town: [],
  soe_group: [],
};

export async function renderOrgUnits(outlet: HTMLElement, _ctx: RouteContext): Promise<void> {
  setTitle('组织架构');
  const treeBox = h('div', { class: 'tree-box panel', testid: 'org-tree' });
  const side = h('div', { class: 'panel org-side', testid: 'org-side' });
  mount(outlet, pageHeader('组织架构'), h('div', { class: 'split' }, treeBox, side));
  const expanded = new Set<string>();
  let selected: string | null = null;
  let units: OrgUnit[] = [];

  async function load(force: boolean): Promise<void> {
    mount(treeBox, loadingBox());
    try {
      units = await loadOrgUnits(force);
    } catch (e) {
      mount(treeBox, errorBox(`加载组织架构失败：${errMsg(e)}`, () => void load(true)));
      return;
    }
    if (expanded.size === 0) for (const u of units) if (u.kind === 'corps' || !u.parent_id) expanded.add(u.id);
    drawTree();
    drawSide();
  }

  function children(parent: string | null): OrgUnit[] {
    const ids = new Set(units.map((u) => u.id));
    return units
      .filter((u) => (parent === null ? !u.parent_id || !ids.has(u.parent_id) : u.parent_id === parent))
      .sort((a, b) => a.code.localeCompare(b.code));
  }

  function node(u: OrgUnit): HTMLElement {
    const kids = children(u.id);
    const open = expanded.has(u.id);
    const toggle = h(
      'button',
      {
        type: 'button',
        class: 'tree-toggle',
        'aria-label': open ? '收起' : '展开',
        'aria-expanded': kids.length ? String(open) : undefined,
        disabled: kids.length === 0,
        onclick: () => {
          if (open) expanded.delete(u.id);
          else expanded.add(u.id);
          drawTree();
        },
      },
      kids.length ? (open ? '▾' : '▸') : '·',
    );
    const labelBtn = h(
      'button',
      {
        type: 'button',
        class: `tree-label${selected === u.id ? ' selected' : ''}`,
        testid: 'org-node',
        'data-id': u.id,
        onclick: () => {
          selected = u.id;
          drawTree();
          drawSide();
        },
      },
      h('span', { class: `kind kind-${u.kind}` }, label(ORG_KIND_NAMES, u.kind)),
      ' ',
      u.name,
      h('span', { class: 'muted' }, ` ${u.code}`),
      kids.length ? h('span', { class: 'muted' }, `（${kids.length}）`) : null,
    );
    return h('li', { role: 'treeitem', 'aria-expanded': kids.length ? String(open) : undefined }, toggle, labelBtn, open && kids.length ? h('ul', { role: 'group' }, kids.map(node)) : null);
  }

  function drawTree(): void {
    const roots = children(null);
    mount(
      treeBox,
      h(
        'div',
        { class: 'tree-tools' },
        h('button', { type: 'button', class: 'btn small', onclick: () => (units.forEach((u) => expanded.add(u.id)), drawTree()) }, '全部展开'),
        h('button', { type: 'button', class: 'btn small', onclick: () => (expanded.clear(), drawTree()) }, '全部收起'),
        h('span', { class: 'muted' }, `共 ${units.length} 个单位`),
      ),
      roots.length ? h('ul', { class: 'tree', role: 'tree' }, roots.map(node)) : h('div', { class: 'state' }, '暂无组织单位'),
    );
  }

  function drawSide(): void {
    const u = units.find((x) => x.id === selected);
    if (!u) {
      mount(side, h('div', { class: 'state' }, '在左侧选择一个单位查看详情', can('org.write') ? '，或为其添加下级单位。' : '。'));
      return;
    }
    const parent = units.find((x) => x.id === u.parent_id);
    // Administrators add units under their own subtree only (the server answers 404 elsewhere).
    const mine = (() => {
      const own = session.account?.org_unit_id;
      for (let at: OrgUnit | undefined = u; at; at = units.find((x) => x.id === at?.parent_id)) {
        if (at.id === own) return true;
        if (!at.parent_id) break;
      }
      return false;
    })();
    const info = h(
      'dl',
      { class: 'meta' },
      h('dt', null, '名称'),
      h('dd', null, u.name),
      h('dt', null, '类型'),
      h('dd', null, label(ORG_KIND_NAMES, u.kind)),
      h('dt', null, '编码'),
      h('dd', { class: 'mono' }, u.code),
      h('dt', null, '上级单位'),
      h('dd', null, parent?.name ?? '—'),
      h('dt', null, '下级单位'),
      h('dd', null, String(children(u.id).length)),
    );
    const kinds = CHILD_KINDS[u.kind] ?? [];
    let addForm: HTMLElement | null = null;
    if (can('org.write') && mine) {
      if (kinds.length === 0) {
        addForm = h('p', { class: 'muted' }, `${label(ORG_KIND_NAMES, u.kind)}下不设下级单位。`);
      } else {
        const form = new Form(
          [
            {
              name: 'kind',
              label: '单位类型',
              type: 'select',
              required: true,
              value: kinds[0],
              testid: 'org-kind',
              options: kinds.map((k) => ({ value: k, label: ORG_KIND_NAMES[k] })),
            },
            { name: 'name', label: '单位名称', required: true, maxlength: 100, testid: 'org-name', span: 2 },
            {
              name: 'code',
              label: '单位编码',
              required: true,
              maxlength: 40,
              testid: 'org-code',
              hint: '如行政区划代码；同级唯一',
              validate: (v) => (/^[0-9A-Za-z_-]{1,40}$/.test(v.trim()) ? (units.some((x) => x.code === v.trim()) ? '该编码已被使用' : null) : '编码为字母、数字、_ 或 -'),
            },
          ],
          { submitLabel: '添加下级单位', submitTestid: 'org-submit', errorTestid: 'org-form-error', testid: 'org-form', fieldLabels: ORG_UNIT_FIELDS },
        );
        form.onSubmit(async (v) => {
          const created = await api<OrgUnit>('/org-units', {
            method: 'POST',
            json: { parent_id: u.id, kind: v.kind, name: v.name.trim(), code: v.code.trim() },
          });
          toast(`已添加 ${v.name.trim()}`);
          expanded.add(u.id);
          if (created?.id) selected = created.id;
          await load(true);
        });
        addForm = h('div', null, h('h3', null, `在“${u.name}”下添加单位`), form.el);
      }
    }
    mount(side, h('h3', null, u.name), info, addForm);
  }

  await load(false);
}
