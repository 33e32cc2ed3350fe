// Haechi console: login, navigation (hash routes such as #/alerts) and the
// pages. Served from /console with a CSP that allows only this origin's
// scripts: no inline scripts or handlers, and no markup built from API data.
//
// Login: type the token; it is kept in this tab's session storage. A token is
// never taken from a link: a crafted link could sign an analyst in as someone
// else, and a URL lands in the browser's history.

import { h, clear, $ } from './dom.js';
import { api, session, storedToken, storeToken, forgetToken, setUnauthorizedHandler, hideStatus } from './api.js';
import { feed, startFeed, stopFeed, onFeed, onLive } from './feed.js';
import { alertsPage, showAlerts, hideAlerts } from './alerts.js';
import { showEntity } from './entity.js';
import { showBlocks } from './blocks.js';
import { showRules } from './rules.js';
import { showPreview } from './preview.js';
import { showReports } from './reports.js';

const NOTICE_KEY = 'haechi.loginNotice';

const PAGES = {
  alerts: { needs: 'investigate', show: (p) => { showAlerts(p); return alertsPage(); }, hide: hideAlerts, title: 'Alerts' },
  entity: { needs: 'investigate', show: showEntity, title: 'Entity explorer' },
  blocks: { needs: 'investigate', show: showBlocks, title: 'Blocks & suppressions' },
  rules: { needs: 'investigate', show: showRules, title: 'Rules' },
  preview: { needs: 'preview_rules', show: showPreview, title: 'Rule preview' },
  reports: { needs: null, show: showReports, title: 'Reports' },
};

let currentPage = null;
let unseen = 0;

// ---- boot -----------------------------------------------------------------------

function boot() {
  $('#login').addEventListener('click', () => login($('#token').value));
  $('#token').addEventListener('keydown', (e) => { if (e.key === 'Enter') login($('#token').value); });
  $('#logout').addEventListener('click', logout);
  setUnauthorizedHandler(() => {
    try { sessionStorage.setItem(NOTICE_KEY, 'The server no longer accepts your token (401). Sign in again.'); } catch { /* ignore */ }
    logout();
  });

  // A token in the address is dropped from it and not used (see the top of this file).
  if (location.hash.replace(/^#/, '').startsWith('token=')) {
    history.replaceState(null, '', `${location.pathname}${location.search}#/alerts`);
    showLogin('A token in a link is not used: type it here.');
    return;
  }
  const saved = storedToken();
  if (saved !== null) {
    login(saved, { auto: true });
    return;
  }
  showLogin();
}

function showLogin(message) {
  $('#topbar').hidden = true;
  $('#app').hidden = true;
  $('#login-view').hidden = false;
  let notice = message;
  try {
    if (!notice) notice = sessionStorage.getItem(NOTICE_KEY);
    sessionStorage.removeItem(NOTICE_KEY);
  } catch { /* ignore */ }
  const err = $('#login-error');
  err.textContent = notice || '';
  err.hidden = !notice;
  $('#token').focus();
}

async function login(token, { auto = false } = {}) {
  const btn = $('#login');
  const err = $('#login-error');
  btn.disabled = true;
  err.hidden = true;
  err.textContent = '';
  try {
    const me = await api('/v1/me', { token, quiet: true });
    session.token = token;
    session.me = me;
    storeToken(token);
    $('#token').value = '';
    enter();
  } catch (e) {
    let msg;
    if (e.status === 401) msg = `Sign-in failed: the server does not accept this token (401 — ${e.message}).`;
    else if (e.status === 0) msg = `Cannot reach the Haechi server: ${e.message}.`;
    else msg = `Sign-in failed (${e.status}): ${e.message}`;
    if (auto && e.status === 401) forgetToken();
    showLogin(msg);
  } finally {
    btn.disabled = false;
  }
}

function logout() {
  stopFeed();
  forgetToken();
  session.token = null;
  session.me = null;
  // A fresh page: nothing of the previous session stays in memory or on screen.
  location.replace(`${location.pathname}${location.search}`);
}

// ---- the signed-in app ----------------------------------------------------------

function enter() {
  const me = session.me;
  $('#login-view').hidden = true;
  $('#topbar').hidden = false;
  $('#app').hidden = false;
  $('#whoami').textContent = `${me.name} (${me.role})`;
  $('#whoami').title = `May: ${(me.may || []).join(', ') || 'nothing'}${me.records ? ' · records kept' : ''}`;

  for (const a of document.querySelectorAll('nav a[data-page]')) {
    const p = PAGES[a.dataset.page];
    const ok = !p.needs || session.may(p.needs);
    a.hidden = !ok;
    if (a.dataset.page === 'reports') {
      const can = session.may('reports') && me.records;
      a.classList.toggle('dim', !can);
      a.title = can ? '' : (session.may('reports') ? 'Needs a server that keeps records' : 'Your role may not read reports');
    }
  }

  onLive(renderLive);
  onFeed(({ added }) => {
    if (currentPage !== 'alerts' && added.length && feed.loaded) {
      unseen += added.length;
      renderUnseen();
    }
  });
  if (session.may('investigate')) startFeed();

  window.addEventListener('hashchange', route);
  route();
}

function parseRoute() {
  let s = location.hash.replace(/^#/, '');
  if (!s.startsWith('/')) s = '/alerts';
  const q = s.indexOf('?');
  const path = q < 0 ? s : s.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : s.slice(q + 1));
  const parts = path.split('/').filter((x) => x !== '').map((x) => { try { return decodeURIComponent(x); } catch { return x; } });
  return { page: parts[0] || 'alerts', rest: parts.slice(1), query };
}

function route() {
  const r = parseRoute();
  let name = r.page;
  if (!PAGES[name]) name = 'alerts';
  const page = PAGES[name];
  const app = $('#app');

  if (page.needs && !session.may(page.needs)) {
    if (currentPage && PAGES[currentPage].hide) PAGES[currentPage].hide();
    currentPage = null;
    for (const s of app.children) s.hidden = true;
    let n = $('#page-denied');
    if (!n) { n = h('section', { id: 'page-denied', class: 'page' }); app.appendChild(n); }
    n.hidden = false;
    clear(n).appendChild(h('div', { class: 'panel notice' },
      h('strong', { text: `${page.title} is not available to your role. ` },),
      `${session.me.name} (${session.me.role}) may: ${(session.me.may || []).join(', ') || 'nothing in this console'}.`));
    markNav(name);
    return;
  }

  if (currentPage && currentPage !== name && PAGES[currentPage].hide) PAGES[currentPage].hide();
  currentPage = name;
  hideStatus();
  const el = page.show(r);
  if (el && el.parentNode !== app) app.appendChild(el);
  for (const s of app.children) s.hidden = s !== el;
  markNav(name);
  document.title = `${page.title} · Haechi console`;
  if (name === 'alerts') { unseen = 0; renderUnseen(); }
}

function markNav(name) {
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    const on = a.dataset.page === name;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

function renderUnseen() {
  const b = $('#new-alerts');
  b.hidden = unseen === 0;
  b.textContent = unseen > 999 ? '999+' : String(unseen);
  b.title = `${unseen} new alert${unseen === 1 ? '' : 's'} since you left the alerts page`;
}

const LIVE_TEXT = {
  idle: ['Offline', 'The live feed is not running.'],
  connecting: ['Connecting…', 'Loading recent alerts and opening the live stream.'],
  live: ['Live', 'New alerts arrive as they fire (server-sent events).'],
  reconnecting: ['Reconnecting…', 'The stream dropped; reconnecting and catching up from the last alert seen.'],
  polling: ['Polling', 'The stream is unavailable; polling for new alerts every few seconds.'],
};

function renderLive(state) {
  const el = $('#live');
  const [text, title] = LIVE_TEXT[state] || [state, ''];
  el.className = `live live-${state}`;
  el.textContent = text;
  el.title = title;
}


boot();
