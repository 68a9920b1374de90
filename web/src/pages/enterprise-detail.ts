// 企业档案 detail / edit / create.

import { ApiError, api, del, get } from '../api';
import { h, mount } from '../dom';
import { ENTERPRISE_STATUS, fmtDateTime } from '../format';
import { ENTERPRISE_FIELDS } from '../i18n';
import { pageHeader, setTitle } from '../layout';
import { navigate, type RouteContext } from '../router';
import { can, loadIndustryCodes, loadOwnershipTypes, loadSectors, orgUnitsOrEmpty } from '../session';
import type { Enterprise, EnterpriseInput, OrgUnit } from '../types';
import { confirmDialog } from '../ui/dialog';
import { Form, numOrNull, orNull } from '../ui/form';
import { errorBox, loadingBox } from '../ui/table';
import { toast } from '../ui/toast';
import { checkNumberRange, checkPhone, checkUscc, parseTagList, parseYearList } from '../validate';
import { errMsg, listHref } from './list-util';

export async function renderEnterpriseDetail(outlet: HTMLElement, ctx: RouteContext): Promise<void> {
  const id = ctx.params.id;
  const isNew = !id;
  // Without enterprise.write the detail is shown read-only (no save / delete).
  const canWrite = can('enterprise.write');
  setTitle(isNew ? '新增企业' : '企业档案');
  mount(outlet, loadingBox());

  let ent: Enterprise | null = null;
  let refs: [OrgUnit[], { code: string; name: string }[], string[], { code: string; name: string }[]];
  try {
    [ent, ...refs] = await Promise.all([
      isNew ? Promise.resolve(null) : get<Enterprise>(`/enterprises/${encodeURIComponent(id)}`),
      orgUnitsOrEmpty(),
      loadSectors(),
      loadOwnershipTypes(),
      loadIndustryCodes(),
    ]);
  } catch (e) {
    mount(
      outlet,
      pageHeader('企业档案', backLink()),
      errorBox(e instanceof ApiError && e.status === 404 ? '该企业不存在或已被删除。' : `加载失败：${errMsg(e)}`, () =>
        void renderEnterpriseDetail(outlet, ctx),
      ),
    );
    return;
  }
  const [units, sectors, ownership, industries] = refs;
  const brigades = units.filter((u) => u.kind === 'brigade');
  const towns = units.filter((u) => u.kind === 'town');
  const soeGroups = units.filter((u) => u.kind === 'soe_group');
  const townOptions = (districtId: string) => [
    { value: '', label: '（无）' },
    ...towns.filter((t) => !districtId || t.parent_id === districtId).map((t) => ({ value: t.id, label: t.name })),
  ];
  // Keep the current values selectable even when outside the caller's visible org units.
  const withCurrent = (opts: { value: string; label: string }[], idv: string | null | undefined, name: string | null | undefined) =>
    idv && !opts.some((o) => o.value === idv) ? [...opts, { value: idv, label: name ?? idv }] : opts;

  const e = ent;
  const form = new Form(
    [
      { name: 'name', label: '企业名称', required: true, value: e?.name, span: 2, maxlength: 200, testid: 'ent-name' },
      {
        name: 'uscc',
        label: '统一社会信用代码',
        required: true,
        value: e?.uscc,
        maxlength: 18,
        testid: 'ent-uscc',
        placeholder: '18 位',
        normalize: (v) => v.trim().toUpperCase(),
        validate: (v) => checkUscc(v),
      },
      {
        name: 'district_id',
        label: '所属区（大队）',
        type: 'select',
        required: true,
        value: e?.district_id ?? '',
        testid: 'ent-district',
        options: withCurrent([{ value: '', label: '请选择' }, ...brigades.map((b) => ({ value: b.id, label: b.name }))], e?.district_id, e?.district_name),
        onChange: (v, f) => f.setOptions('town_id', townOptions(v)),
      },
      {
        name: 'town_id',
        label: '所属街镇',
        type: 'select',
        value: e?.town_id ?? '',
        testid: 'ent-town',
        options: withCurrent(townOptions(e?.district_id ?? ''), e?.town_id, e?.town_name),
      },
      {
        name: 'soe_group_id',
        label: '所属国有集团',
        type: 'select',
        value: e?.soe_group_id ?? '',
        testid: 'ent-soe-group',
        options: withCurrent([{ value: '', label: '（无）' }, ...soeGroups.map((g) => ({ value: g.id, label: g.name }))], e?.soe_group_id, e?.soe_group_name),
      },
      { name: 'address', label: '地址', value: e?.address, span: 3, maxlength: 300, testid: 'ent-address' },
      {
        name: 'lon',
        label: '经度',
        type: 'number',
        step: 'any',
        value: e?.lon,
        placeholder: '如 121.4737',
        testid: 'ent-lon',
        validate: (v) => checkNumberRange(v, 73, 136, '经度'),
      },
      {
        name: 'lat',
        label: '纬度',
        type: 'number',
        step: 'any',
        value: e?.lat,
        placeholder: '如 31.2304',
        testid: 'ent-lat',
        validate: (v, all) => checkNumberRange(v, 3, 54, '纬度') ?? ((v.trim() === '') !== (all.lon.trim() === '') ? '经度和纬度须同时填写' : null),
      },
      {
        name: 'status',
        label: '经营状态',
        type: 'select',
        required: true,
        value: e?.status ?? 'operating',
        testid: 'ent-status',
        options: Object.entries(ENTERPRISE_STATUS).map(([value, l]) => ({ value, label: l })),
      },
      { name: 'legal_representative', label: '法定代表人', value: e?.legal_representative, maxlength: 50, testid: 'ent-legal' },
      { name: 'principal_name', label: '主要负责人', value: e?.principal_name, maxlength: 50, testid: 'ent-principal' },
      {
        name: 'principal_phone',
        label: '主要负责人电话',
        type: 'tel',
        value: e?.principal_phone,
        maxlength: 20,
        testid: 'ent-phone',
        validate: (v) => checkPhone(v),
      },
      {
        name: 'ownership_type',
        label: '国民经济类型',
        type: 'select',
        value: e?.ownership_type ?? '',
        testid: 'ent-ownership',
        options: withCurrent([{ value: '', label: '请选择' }, ...ownership.map((o) => ({ value: o, label: o }))], e?.ownership_type, e?.ownership_type),
      },
      {
        name: 'industry_code',
        label: '国民经济行业（GB/T 4754）',
        value: e?.industry_code,
        testid: 'ent-industry',
        placeholder: '行业代码，如 C2614',
        suggestions: industries.map((i) => ({ value: i.code, label: i.name })),
        validate: (v) =>
          v.trim() && industries.length && !industries.some((i) => i.code === v.trim()) ? '行业代码不在 GB/T 4754-2017 分类中' : null,
      },
      {
        name: 'sector',
        label: '监管行业',
        type: 'select',
        required: true,
        value: e?.sector ?? '',
        testid: 'ent-sector',
        options: [{ value: '', label: '请选择' }, ...sectors.map((s) => ({ value: s.code, label: `${s.code} ${s.name}` }))],
      },
      {
        name: 'key_unit_years',
        label: '重点单位年度',
        value: e?.key_unit_years.join(', '),
        placeholder: '多个年度用逗号分隔，如 2024, 2025',
        testid: 'ent-key-years',
        validate: (v) => {
          const r = parseYearList(v);
          return typeof r === 'string' ? r : null;
        },
      },
      {
        name: 'tags',
        label: '标签',
        value: e?.tags.join(', '),
        placeholder: '多个标签用逗号分隔',
        span: 2,
        testid: 'ent-tags',
        validate: (v) => (parseTagList(v).some((t) => t.length > 30) ? '单个标签不超过 30 字' : null),
      },
    ],
    {
      submitLabel: isNew ? '创建' : '保存修改',
      submitTestid: 'enterprise-save',
      errorTestid: 'enterprise-form-error',
      testid: 'enterprise-form',
      readonly: !canWrite,
      fieldLabels: ENTERPRISE_FIELDS,
      extraButtons: canWrite
        ? [
            h('a', { class: 'btn', href: listHref('/enterprises'), testid: 'enterprise-cancel' }, '取消'),
            !isNew
              ? h('button', { type: 'button', class: 'btn danger right', testid: 'enterprise-delete', onclick: () => void remove() }, '删除')
              : null,
          ]
        : [],
    },
  );

  form.onSubmit(async (v) => {
    const years = parseYearList(v.key_unit_years);
    const body: EnterpriseInput = {
      name: v.name.trim(),
      uscc: v.uscc.trim().toUpperCase(),
      district_id: orNull(v.district_id),
      town_id: orNull(v.town_id),
      soe_group_id: orNull(v.soe_group_id),
      address: orNull(v.address),
      lon: numOrNull(v.lon),
      lat: numOrNull(v.lat),
      legal_representative: orNull(v.legal_representative),
      principal_name: orNull(v.principal_name),
      principal_phone: orNull(v.principal_phone),
      ownership_type: orNull(v.ownership_type),
      industry_code: orNull(v.industry_code),
      sector: orNull(v.sector),
      key_unit_years: typeof years === 'string' ? [] : years,
      status: v.status as Enterprise['status'],
      tags: parseTagList(v.tags),
    };
    try {
      if (isNew) {
        const created = await api<Enterprise>('/enterprises', { method: 'POST', json: body });
        toast('企业档案已创建');
        navigate(`/enterprises/${encodeURIComponent(created.id)}`);
      } else {
        const saved = await api<Enterprise>(`/enterprises/${encodeURIComponent(id)}`, {
          method: 'PUT',
          json: { ...body, version: e!.version },
        });
        toast('已保存');
        void renderEnterpriseDetail(outlet, { ...ctx, params: { id: saved?.id ?? id } });
      }
    } catch (err) {
      if (err instanceof ApiError && err.code === 'version_conflict') {
        form.showServerError(err);
        form.errorBox.append(
          ' ',
          h(
            'button',
            { type: 'button', class: 'btn small', testid: 'reload-after-conflict', onclick: () => void renderEnterpriseDetail(outlet, ctx) },
            '重新加载（放弃本次修改）',
          ),
        );
        return;
      }
      throw err;
    }
  });

  async function remove(): Promise<void> {
    if (!(await confirmDialog(`确定删除企业“${e!.name}”的档案吗？此操作将记入审计日志。`, '删除', true))) return;
    try {
      await del(`/enterprises/${encodeURIComponent(id)}`);
      toast('已删除');
      window.location.hash = listHref('/enterprises');
    } catch (err) {
      form.showServerError(err);
    }
  }

  const meta = e
    ? h(
        'dl',
        { class: 'meta', testid: 'enterprise-meta' },
        h('dt', null, '所属区'),
        h('dd', null, e.district_name ?? '—'),
        h('dt', null, '街镇'),
        h('dd', null, e.town_name ?? '—'),
        h('dt', null, '创建时间'),
        h('dd', null, fmtDateTime(e.created_at)),
        h('dt', null, '更新时间'),
        h('dd', null, fmtDateTime(e.updated_at)),
        h('dt', null, '版本'),
        h('dd', null, String(e.version)),
        h('dt', null, '编号'),
        h('dd', { class: 'mono' }, e.id),
      )
    : null;

  setTitle(e ? e.name : '新增企业');
  mount(
    outlet,
    pageHeader(e ? e.name : '新增企业', backLink()),
    h(
      'div',
      { class: 'panel', testid: isNew ? 'enterprise-new-form' : 'enterprise-detail', 'data-id': e?.id },
      canWrite ? null : h('div', { class: 'form-notice', testid: 'readonly-notice' }, '只读：当前账号没有编辑企业档案的权限。'),
      meta,
      form.el,
    ),
  );
  if (canWrite) form.control('name').focus();
}

function backLink(): HTMLElement {
  return h('a', { class: 'btn', href: listHref('/enterprises'), testid: 'back' }, '← 返回列表');
}
