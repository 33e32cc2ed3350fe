// The /v1 API: the token, calls with it, and the status line that shows
// what went wrong.

import { h, clear } from './dom.js';

const TOKEN_KEY = 'haechi.token';

export const session = {
  token: null,
  me: null, // {name, role, may:[...], records}
  may(what) { return !!this.me && Array.isArray(this.me.may) && this.me.may.includes(what); },
};

export function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}
export function storeToken(t) {
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* private mode */ }
}
export function forgetToken() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ }
}

export class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export function authHeaders(extra) {
  const hd = new Headers(extra || {});
  if (session.token !== null && session.token !== undefined) hd.set('Authorization', `Bearer ${session.token}`);
  return hd;
}

/** The `error` text of a failed answer, or its body, or its status. */
async function errorText(res) {
  const text = await res.text().catch(() => '');
  try {
    const j = JSON.parse(text);
    if (j && typeof j.error === 'string') return j.error;
  } catch { /* not JSON */ }
  return text.trim() || `${res.status} ${res.statusText}`;
}

/**
 * Call the API. opts: {method, json, text, as: 'json'|'text'|'blob'|'none', quiet, token}
 * Throws ApiError; unless `quiet`, the error is also shown in #status.
 */
export async function api(path, opts = {}) {
  const method = opts.method || 'GET';
  const headers = authHeaders({ Accept: 'application/json' });
  if (opts.token !== undefined) headers.set('Authorization', `Bearer ${opts.token}`);
  let body;
  if (opts.json !== undefined) { headers.set('Content-Type', 'application/json'); body = JSON.stringify(opts.json); }
  else if (opts.text !== undefined) { headers.set('Content-Type', 'text/plain; charset=utf-8'); body = opts.text; }
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    const err = new ApiError(0, `cannot reach the server (${e.message || e})`, path);
    if (!opts.quiet) showStatus(`${method} ${path}: ${err.message}`, 'error');
    throw err;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, await errorText(res), path);
    if (res.status === 401 && opts.token === undefined) onUnauthorized(err);
    if (!opts.quiet) showStatus(`${method} ${path.split('?')[0]}: ${err.message}`, 'error', res.status);
    throw err;
  }
  const as = opts.as || 'json';
  if (as === 'none' || res.status === 204) return null;
  if (as === 'text') return res.text();
  if (as === 'blob') return res.blob();
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// ---- status line ----------------------------------------------------------

let statusTimer = 0;

/** Show a message in #status. kind: 'error' (stays until dismissed) | 'ok' | 'info'. */
export function showStatus(message, kind = 'info', code) {
  const el = document.getElementById('status');
  if (!el) return;
  clearTimeout(statusTimer);
  clear(el);
  el.className = `status status-${kind}`;
  el.hidden = false;
  el.appendChild(h('span', { class: 'status-text', text: message }));
  if (code) el.appendChild(h('span', { class: 'status-code', text: `HTTP ${code}` }));
  el.appendChild(h('button', { type: 'button', class: 'status-close', title: 'Dismiss', 'aria-label': 'Dismiss', text: '×', on: { click: hideStatus } }));
  if (kind !== 'error') statusTimer = setTimeout(hideStatus, 5000);
}

export function hideStatus() {
  const el = document.getElementById('status');
  if (!el) return;
  el.hidden = true;
  clear(el);
}
