// Reports: headline numbers of the management report for a period (beside
// the period before it), and the HTML report as a download. Every read of
// the report is itself recorded in the access records.

import { h, clear, fmtNum, fmtPct, fmtTime, table, empty, entityLink } from './dom.js';
import { api, session, showStatus } from './api.js';

let built = false;
let loadedOnce = false;
let root, body, fromIn, toIn, loadBtn, dlBtn, numbers, dlLink;

const DAY = 86400000;
const KST_DATE = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Seoul', year: 'numeric', month: '2-digit', day: '2-digit' });

export function showReports() {
  if (!built) build();
  if (allowed() && !loadedOnce) { loadedOnce = true; loadJson(); }
  return root;
}

function allowed() {
  return session.may('reports') && session.me?.records === true;
}

function build() {
  built = true;
  root = h('section', { id: 'page-reports', class: 'page' }, h('div', { class: 'toolbar' }, h('h1', { text: 'Reports' })));
  body = h('div');
  root.appendChild(body);
  if (!session.may('reports')) {
    body.appendChild(h('div', { class: 'panel notice', id: 'reports-unavailable' },
      h('strong', { text: 'Reports are not available to your role. ' }),
      `You are signed in as ${session.me?.name} with the role “${session.me?.role}”, which does not have the “reports” permission. The management report is for auditors and administrators.`));
    return;
  }
  if (session.me?.records !== true) {
    body.appendChild(h('div', { class: 'panel notice', id: 'reports-unavailable' },
      h('strong', { text: 'Reports are not available on this server. ' }),
      'The report is built from the access records, and this server keeps none (it runs without a data dir that keeps records).'));
    return;
  }
  const today = KST_DATE.format(new Date());
  const monthAgo = KST_DATE.format(new Date(Date.now() - 29 * DAY));
  fromIn = h('input', { id: 'report-from', type: 'date', value: monthAgo, title: 'First day (KST)' });
  toIn = h('input', { id: 'report-to', type: 'date', value: today, title: 'Last day, included (KST)' });
  loadBtn = h('button', { type: 'button', id: 'report-load', class: 'btn btn-primary', text: 'Show', on: { click: loadJson } });
  dlBtn = h('button', { type: 'button', id: 'report-download', class: 'btn', text: 'Download HTML report', on: { click: download } });
  dlLink = h('span', { id: 'report-link' });
  numbers = h('div', { id: 'report-numbers' });
  body.appendChild(h('div', { class: 'panel' },
    h('div', { class: 'inline wrap' },
      h('label', { for: 'report-from', text: 'From' }), fromIn,
      h('label', { for: 'report-to', text: 'to' }), toIn, h('span', { class: 'muted small', text: '(whole days, KST)' }),
      loadBtn, h('span', { class: 'spacer' }), dlBtn, dlLink),
    h('p', { class: 'muted small', text: 'Each time the report is read, the read is recorded in the access records under your name.' })));
  body.appendChild(numbers);
}

function period() {
  const f = fromIn.value;
  const t = toIn.value;
  if (!f || !t) throw new Error('choose both days');
  const from = new Date(`${f}T00:00:00+09:00`);
  const to = new Date(new Date(`${t}T00:00:00+09:00`).getTime() + DAY);
  if (!(from < to)) throw new Error('the first day must not be after the last');
  return { from: from.toISOString(), to: to.toISOString(), f, t };
}

async function loadJson() {
  let p;
  try { p = period(); } catch (e) { showStatus(`Report: ${e.message}`, 'error'); return; }
  loadBtn.disabled = true;
  clear(numbers).appendChild(empty('Building the report…'));
  try {
    const rep = await api(`/v1/reports/summary?format=json&from=${encodeURIComponent(p.from)}&to=${encodeURIComponent(p.to)}`);
    renderNumbers(rep);
  } catch (e) {
    clear(numbers).appendChild(h('div', { class: 'error-box', text: e.message }));
  } finally {
    loadBtn.disabled = false;
  }
}

async function download() {
  let p;
  try { p = period(); } catch (e) { showStatus(`Report: ${e.message}`, 'error'); return; }
  dlBtn.disabled = true;
  try {
    const blob = await api(`/v1/reports/summary?format=html&from=${encodeURIComponent(p.from)}&to=${encodeURIComponent(p.to)}`, { as: 'blob' });
    const url = URL.createObjectURL(new Blob([blob], { type: 'text/html' }));
    const name = `haechi-report-${p.f}-to-${p.t}.html`;
    const a = h('a', { href: url, download: name, class: 'dl-link', text: `Save ${name} again` });
    clear(dlLink).appendChild(a);
    a.click();
    showStatus(`Report downloaded as ${name}.`, 'ok');
    setTimeout(() => URL.revokeObjectURL(url), 10 * 60 * 1000);
  } catch { /* in #status */ } finally {
    dlBtn.disabled = false;
  }
}

const FIGURES = {
  events: { label: 'eKYC events', fmt: fmtNum },
  success_rate: { label: 'success rate', fmt: (v) => fmtPct(v) },
  mean_duration_ms: { label: 'mean step duration', fmt: (v) => (v === null || v === undefined ? '–' : `${(v / 1000).toFixed(1)} s`) },
  alerts: { label: 'alerts', fmt: fmtNum },
  blocks: { label: 'blocks set', fmt: fmtNum },
  block_rate: { label: 'decisions blocked', fmt: (v) => fmtPct(v, 2) },
};

function renderNumbers(rep) {
  clear(numbers);
  const per = rep.period || {};
  const prev = rep.previous_period || {};
  numbers.appendChild(h('div', { class: 'muted small', text: `Period ${fmtTime(per.from_ms)} – ${fmtTime(per.to_ms)} KST, beside ${fmtTime(prev.from_ms)} – ${fmtTime(prev.to_ms)}` }));
  const cmp = Array.isArray(rep.comparison) ? rep.comparison : [];
  numbers.appendChild(h('div', { class: 'stats headline', id: 'report-headline' }, cmp.map((c) => {
    const f = FIGURES[c.figure] || { label: c.figure.replace(/_/g, ' '), fmt: fmtNum };
    let delta = '';
    if (c.change_ratio !== null && c.change_ratio !== undefined) delta = `${c.change_ratio >= 0 ? '+' : ''}${fmtPct(c.change_ratio)} vs previous`;
    else if (c.previous !== null && c.previous !== undefined) delta = `previous ${f.fmt(c.previous)}`;
    else delta = 'no previous figure';
    return h('div', { class: 'stat' },
      h('div', { class: 'stat-value', text: f.fmt(c.current) }),
      h('div', { class: 'stat-label', text: f.label }),
      h('div', { class: 'stat-delta', text: delta }));
  })));

  const an = rep.anomalies || {};
  const cols = h('div', { class: 'report-cols' });
  const small = (title, heads, rows, id) => h('div', { class: 'panel' }, h('h3', { text: title }),
    rows.length ? table({ class: 'grid compact', id }, heads, rows) : empty('None in this period.'));
  cols.appendChild(small('Alerts by severity', ['Severity', { text: 'Alerts', attrs: { class: 'num' } }, { text: 'Share', attrs: { class: 'num' } }],
    (an.alerts_by_severity || []).map((r) => h('tr', null, h('td', { text: r.name }), h('td', { class: 'num', text: fmtNum(r.count) }), h('td', { class: 'num', text: fmtPct(r.share) })))));
  cols.appendChild(small('Top rules by alerts', ['Rule', { text: 'Alerts', attrs: { class: 'num' } }, { text: 'Share', attrs: { class: 'num' } }],
    (an.alerts_by_rule || []).slice(0, 8).map((r) => h('tr', null, h('td', { class: 'mono', text: r.name }), h('td', { class: 'num', text: fmtNum(r.count) }), h('td', { class: 'num', text: fmtPct(r.share) })))));
  cols.appendChild(small('Most alerted entities', ['Entity', { text: 'Alerts', attrs: { class: 'num' } }],
    (an.top_entities || []).slice(0, 8).map((r) => h('tr', null, h('td', null, entityLink(r.entity_kind, r.entity)), h('td', { class: 'num', text: fmtNum(r.alerts) })))));
  cols.appendChild(small('Blocks by scope', ['Scope', { text: 'Set', attrs: { class: 'num' } }, { text: 'Lifted', attrs: { class: 'num' } }],
    (an.blocks_by_scope || []).map((r) => h('tr', null, h('td', { text: r.scope }), h('td', { class: 'num', text: fmtNum(r.set) }), h('td', { class: 'num', text: fmtNum(r.lifted) })))));
  numbers.appendChild(cols);
  const rec = rep.records || {};
  numbers.appendChild(h('div', { class: 'muted small', text: `Access records in the period: ${fmtNum(rec.total)} (access ${fmtNum(rec.access)}, decision ${fmtNum(rec.decision)}, alert ${fmtNum(rec.alert)}, block ${fmtNum(rec.block)}, other ${fmtNum(rec.other)}). The full report, with steps, methods and failure reasons, is in the HTML download.` }));
}

