// 登录

import { api } from '../api';
import { h, mount } from '../dom';
import { errorText } from '../i18n';
import { setTitle } from '../layout';
import type { LoginResponse, Me } from '../types';

export function renderLogin(root: HTMLElement, o: { notice?: string; onLoggedIn: (a: Me) => void }): void {
  setTitle('登录');
  const username = h('input', {
    id: 'login-username',
    name: 'username',
    type: 'text',
    autocomplete: 'username',
    testid: 'login-username',
    maxlength: 64,
    required: true,
  });
  const password = h('input', {
    id: 'login-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    testid: 'login-password',
    maxlength: 128,
    required: true,
  });
  const wall = h('input', { id: 'login-wall', name: 'wall_screen', type: 'checkbox', testid: 'login-wall-screen' });
  const error = h('div', { class: 'form-error', role: 'alert', testid: 'login-error', hidden: true });
  const notice = h('div', { class: 'form-notice', testid: 'login-notice', hidden: !o.notice }, o.notice ?? '');
  const submit = h('button', { type: 'submit', class: 'btn primary block', testid: 'login-submit' }, '登 录');
  const userErr = h('div', { class: 'field-error' });
  const passErr = h('div', { class: 'field-error' });

  const showError = (msg: string) => {
    error.textContent = msg;
    error.hidden = false;
  };

  const form = h(
    'form',
    { class: 'login-form', novalidate: true, testid: 'login-form' },
    h('h2', null, '用户登录'),
    notice,
    error,
    h('div', { class: 'field' }, h('label', { for: 'login-username' }, '用户名'), username, userErr),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, '密码'), password, passErr),
    h(
      'div',
      { class: 'field field-checkbox' },
      h('label', { for: 'login-wall' }, wall, ' 大屏值守会话'),
      h('div', { class: 'field-hint' }, '用于指挥中心大屏长时间值守的终端，请勿在个人电脑上勾选。'),
    ),
    submit,
  );

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    notice.hidden = true;
    const u = username.value.trim();
    const p = password.value;
    userErr.textContent = u ? '' : '请输入用户名';
    passErr.textContent = p ? '' : '请输入密码';
    username.classList.toggle('invalid', !u);
    password.classList.toggle('invalid', !p);
    if (!u || !p) {
      (u ? password : username).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = '正在登录…';
    try {
      const res = await api<LoginResponse>('/auth/login', {
        method: 'POST',
        json: { username: u, password: p, wall_screen: wall.checked },
        noAuthRedirect: true,
      });
      password.value = '';
      // The login answer has no permissions; /auth/me adds them (and corps_level).
      let me: Me = res.account;
      try {
        me = await api<Me>('/auth/me', { noAuthRedirect: true });
      } catch {
        /* fall back to the role's permissions */
      }
      o.onLoggedIn(me);
    } catch (e) {
      password.value = '';
      // Chinese by code: 用户名或密码错误，再错 N 次账号将被锁定 / 密码错误次数过多，账号已锁定，请于 … 后重试 / 登录尝试过于频繁 / 账号已停用 …
      showError(errorText(e));
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = '登 录';
    }
  });

  mount(
    root,
    h(
      'div',
      { class: 'login-page' },
      h(
        'div',
        { class: 'login-box' },
        h(
          'div',
          { class: 'login-brand' },
          h('img', { src: '/favicon.svg', alt: '', width: 40, height: 40 }),
          h('div', null, h('div', { class: 'login-title' }, '守护'), h('div', { class: 'login-sub' }, '应急管理综合执法指挥调度平台')),
        ),
        form,
      ),
      h('div', { class: 'login-foot' }, '市应急管理局执法总队'),
    ),
  );
  username.focus();
}
