// DOM and formatting helpers. Everything from the API goes into the page as
// text (textContent / text nodes), never as markup.

/**
 * h('tr', {class: 'x', dataset: {alertId: id}, on: {click: fn}}, child, ...)
 * Children: nodes, strings/numbers (as text), arrays, null/false (skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'style') el.style.cssText = v; // CSSOM: allowed by the CSP, unlike a style attribute
      else if (k === 'value') el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

// ---- time ---------------------------------------------------------------

const KST_FULL = new Intl.DateTimeFormat('sv-SE', {
  timeZone: 'Asia/Seoul', year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
});

/** "2026-11-02 02:06:16" in KST, from an RFC 3339 string or epoch ms. */
export function fmtTime(t) {
  if (t === null || t === undefined || t === '') return '';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return KST_FULL.format(d);
}

/** "11-02 02:06:16" (KST), for dense tables. */
export function fmtTimeShort(t) {
  const s = fmtTime(t);
  return /^\d{4}-/.test(s) ? s.slice(5) : s;
}

/** 14395 -> "3h 59m" */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '';
  let s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return hh ? `${d}d ${hh}h` : `${d}d`;
  if (hh) return m ? `${hh}h ${m}m` : `${hh}h`;
  if (m) return s ? `${m}m ${s}s` : `${m}m`;
  return `${s}s`;
}

// ---- numbers ------------------------------------------------------------

const INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function fmtNum(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return INT.format(v);
  const a = Math.abs(v);
  if (a >= 1000) return INT.format(v);
  if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, '');
  return v.toPrecision(3).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

export function fmtPct(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return `${(v * 100).toFixed(digits)}%`;
}

// ---- domain -------------------------------------------------------------

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'];
export const sevRank = (s) => Math.max(0, SEVERITIES.indexOf(s));

export const KINDS = ['ip', 'subnet', 'device', 'customer', 'id_doc', 'account', 'staff', 'session'];

/** Event fields that name an entity, and the entity kind they name. */
export const FIELD_KIND = {
  ip: 'ip', device_id: 'device', customer_id: 'customer', id_doc_hash: 'id_doc',
  account_hash: 'account', staff_id: 'staff', session_id: 'session',
};

export function sevBadge(sev) {
  return h('span', { class: `sev sev-${SEVERITIES.includes(sev) ? sev : 'info'}`, text: sev || '?' });
}

/** An action as text: {kind:"block", ttl_s:3600} -> "block 1h". */
export function fmtAction(a) {
  if (a === null || a === undefined) return '';
  if (typeof a === 'string') return a;
  if (typeof a === 'object') {
    const kind = a.kind ?? '';
    return a.ttl_s ? `${kind} ${fmtDuration(a.ttl_s)}` : String(kind);
  }
  return String(a);
}

export function actionKind(a) {
  if (!a) return '';
  if (typeof a === 'string') return a.split(' ')[0];
  return a.kind || '';
}

export function entityHref(kind, key) {
  return `#/entity/${encodeURIComponent(kind)}/${encodeURIComponent(key)}`;
}

/** A link to the entity explorer: "ip 1.2.3.4". */
export function entityLink(kind, key, { showKind = true } = {}) {
  if (!key) return h('span', { class: 'muted', text: '—' });
  return h('a', { class: 'entity-link', href: entityHref(kind, key), title: `${kind} ${key}` },
    showKind ? h('span', { class: 'kind', text: kind }) : null,
    h('span', { class: 'mono', text: key }));
}

export function triageText(t) {
  if (!t) return 'open';
  const parts = [t.state || 'open'];
  if (t.label) parts.push(t.label);
  if (t.by) parts.push(`by ${t.by}`);
  return parts.join(' · ');
}

export function debounce(fn, ms) {
  let t = 0;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

/** A <table> with a header row; rows: array of arrays of cells (node or text). */
export function table(attrs, headers, rows) {
  return h('table', attrs,
    h('thead', null, h('tr', null, headers.map((c) =>
      typeof c === 'string' ? h('th', { text: c }) : h('th', c.attrs || null, c.text)))),
    h('tbody', null, rows));
}

export function empty(text) {
  return h('div', { class: 'empty', text });
}
