// The office shell: top bar (user, role, org unit, logout) and a left menu by role.

import { h, mount } from './dom';
import { navFor, navOf } from './nav';
import { roleName, session } from './session';

export interface Shell {
  root: HTMLElement;
  outlet: HTMLElement;
  setActive: (path: string) => void;
  accountId: string;
}

export function buildShell(onLogout: () => void): Shell {
  const acc = session.account!;
  const items = navFor(acc);
  const links = new Map<string, HTMLAnchorElement>();
  const nav = h(
    'nav',
    { class: 'sidenav', 'aria-label': '主菜单' },
    h(
      'ul',
      null,
      items.map((n) => {
        const a = h('a', { href: `#${n.path}`, testid: `nav-${n.id}` }, h('span', { class: 'nav-icon', 'aria-hidden': 'true' }, n.icon), h('span', null, n.label));
        links.set(n.id, a);
        return h('li', null, a);
      }),
    ),
    acc.role === 'admin'
      ? h('div', { class: 'nav-foot' }, h('a', { href: '/api-docs/', target: '_blank', rel: 'noopener', testid: 'nav-api-docs' }, 'API 文档'))
      : null,
  );
  const outlet = h('main', { class: 'content', id: 'content', tabindex: -1 });
  const userMenu = h(
    'div',
    { class: 'user-menu', testid: 'user-menu' },
    h('span', { class: 'user-name', testid: 'user-name', title: acc.username }, acc.display_name || acc.username),
    h('span', { class: 'user-role', testid: 'user-role' }, roleName(acc.role)),
    h('span', { class: 'user-org', testid: 'user-org' }, acc.org_unit_name || '—'),
    h('a', { href: '#/change-password', class: 'top-link', testid: 'nav-change-password' }, '修改密码'),
    h('button', { type: 'button', class: 'btn small logout', testid: 'logout', onclick: onLogout }, '退出'),
  );
  const root = h(
    'div',
    { class: 'shell' },
    h(
      'header',
      { class: 'topbar' },
      h('a', { class: 'brand', href: '#/' }, h('img', { src: '/favicon.svg', alt: '', width: 22, height: 22 }), h('span', null, '守护 · 应急管理综合执法平台')),
      userMenu,
    ),
    h('div', { class: 'shell-body' }, nav, outlet),
  );
  return {
    root,
    outlet,
    accountId: acc.id,
    setActive(path: string) {
      const cur = navOf(path);
      for (const [id, a] of links) {
        const on = cur?.id === id;
        a.classList.toggle('active', on);
        if (on) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
      }
    },
  };
}

/** Page heading + optional toolbar on the right. */
export function pageHeader(title: string, ...tools: (Node | null | false)[]): HTMLElement {
  return h('div', { class: 'page-head' }, h('h1', null, title), h('div', { class: 'page-tools' }, tools));
}

export function setTitle(title: string): void {
  document.title = `${title} - 守护`;
}

export function forbidden(outlet: HTMLElement): void {
  mount(outlet, pageHeader('无权访问'), h('div', { class: 'state error', testid: 'forbidden' }, '当前账号无权访问此页面。'));
}
