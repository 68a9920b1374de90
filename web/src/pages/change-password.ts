// 修改密码

import { api } from '../api';
import { h, mount } from '../dom';
import { pageHeader, setTitle } from '../layout';
import { session } from '../session';
import { Form } from '../ui/form';
import { toast } from '../ui/toast';
import { checkPassword } from '../validate';

export function renderChangePassword(
  root: HTMLElement,
  o: { forced: boolean; onDone: () => void | Promise<void>; onLogout?: () => void | Promise<void> },
): void {
  setTitle('修改密码');
  const form = new Form(
    [
      { name: 'old_password', label: '原密码', type: 'password', required: true, autocomplete: 'current-password', testid: 'pw-old', span: 3 },
      {
        name: 'new_password',
        label: '新密码',
        type: 'password',
        required: true,
        autocomplete: 'new-password',
        testid: 'pw-new',
        span: 3,
        hint: '至少 8 位，且包含小写字母、大写字母、数字、符号中的至少 3 类',
        validate: (v, all) => checkPassword(v) ?? (v === all.old_password ? '新密码不能与原密码相同' : null),
      },
      {
        name: 'confirm',
        label: '确认新密码',
        type: 'password',
        required: true,
        autocomplete: 'new-password',
        testid: 'pw-confirm',
        span: 3,
        validate: (v, all) => (v !== all.new_password ? '两次输入的新密码不一致' : null),
      },
    ],
    { submitLabel: '修改密码', submitTestid: 'pw-submit', errorTestid: 'pw-error', columns: 1, testid: 'password-form' },
  );
  form.onSubmit(async (v) => {
    await api('/auth/password', { method: 'POST', json: { old_password: v.old_password, new_password: v.new_password } });
    toast('密码已修改');
    await o.onDone();
  });

  if (o.forced) {
    const acc = session.account;
    mount(
      root,
      h(
        'div',
        { class: 'login-page' },
        h(
          'div',
          { class: 'login-box wide' },
          h('h2', null, '修改密码'),
          h(
            'div',
            { class: 'form-notice', testid: 'pw-forced-notice' },
            `${acc?.display_name ?? acc?.username ?? ''}，您的密码为初始密码或已被重置，必须修改后才能使用系统。`,
          ),
          form.el,
          h('div', { class: 'login-alt' }, h('button', { type: 'button', class: 'btn link', testid: 'logout', onclick: () => void o.onLogout?.() }, '退出登录')),
        ),
      ),
    );
  } else {
    mount(root, pageHeader('修改密码'), h('div', { class: 'panel narrow' }, form.el));
  }
  form.control('old_password').focus();
}
