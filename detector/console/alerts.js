// Alerts page: the live feed as a table (newest on top), filters, and the
// detail of one alert with its evidence, model contributions, the entity's
// recent events and triage.

import { h, clear, fmtTime, fmtTimeShort, fmtNum, fmtAction, actionKind, sevBadge, sevRank, SEVERITIES,
  entityLink, triageText, debounce, table, empty, FIELD_KIND } from './dom.js';
import { api, session, showStatus } from './api.js';
import { feed, onFeed, setTriage } from './feed.js';
import { makeChart, disposeChart } from './charts.js';

const MAX_ROWS = 1500;

let built = false;
let root, tbody, countEl, countNote, detailEl, layoutEl, wrapEl;
let fSev, fRule, fEntity, fTriage;
const rows = new Map(); // id -> tr (rows in the table)
let selectedId = null;
let pendingOpen = null; // an alert id asked for by the URL before the feed had it
let visible = false;

export function alertsPage() {
  if (!built) build();
  return root;
}

function build() {
  built = true;
  fSev = h('select', { id: 'f-severity', title: 'Minimum severity' },
    h('option', { value: '', text: 'All severities' }),
    SEVERITIES.slice(1).map((s) => h('option', { value: s, text: s === 'critical' ? 'critical' : `${s} and above` })));
  fRule = h('input', { id: 'f-rule', type: 'search', placeholder: 'Rule contains…', autocomplete: 'off', spellcheck: 'false' });
  fEntity = h('input', { id: 'f-entity', type: 'search', placeholder: 'Entity contains…', autocomplete: 'off', spellcheck: 'false' });
  fTriage = h('select', { id: 'f-triage', title: 'Triage state' },
    h('option', { value: '', text: 'Any triage state' }),
    h('option', { value: 'open', text: 'Open' }),
    h('option', { value: 'acknowledged', text: 'Acknowledged' }),
    h('option', { value: 'resolved', text: 'Resolved' }),
    h('option', { value: 'unresolved', text: 'Not resolved' }));
  const rerender = debounce(renderAll, 120);
  for (const el of [fSev, fTriage]) el.addEventListener('change', renderAll);
  for (const el of [fRule, fEntity]) el.addEventListener('input', rerender);

  countEl = h('span', { id: 'alert-count', class: 'count', text: '0' });
  countNote = h('span', { class: 'muted' });
  const clearBtn = h('button', { type: 'button', class: 'btn btn-small btn-quiet', text: 'Clear filters', on: { click: () => {
    fSev.value = ''; fRule.value = ''; fEntity.value = ''; fTriage.value = ''; renderAll();
  } } });

  tbody = h('tbody');
  const tbl = h('table', { id: 'alerts', class: 'grid alerts-table' },
    h('thead', null, h('tr', null,
      h('th', { class: 'c-time', text: 'Time (KST)' }),
      h('th', { class: 'c-sev', text: 'Severity' }),
      h('th', { class: 'c-rule', text: 'Rule' }),
      h('th', { class: 'c-entity', text: 'Entity' }),
      h('th', { class: 'c-action', text: 'Action' }),
      h('th', { class: 'c-count num', text: 'Count' }),
      h('th', { class: 'c-triage', text: 'Triage' }))),
    tbody);
  tbody.addEventListener('click', (e) => {
    if (e.target.closest('a')) return;
    const tr = e.target.closest('tr[data-alert-id]');
    if (tr) select(tr.dataset.alertId);
  });
  wrapEl = h('div', { class: 'table-wrap alerts-wrap' }, tbl);
  detailEl = h('div', { id: 'alert-detail', class: 'panel detail', hidden: true, tabindex: '-1' });
  layoutEl = h('div', { class: 'alerts-layout' }, h('div', { class: 'alerts-main' }, wrapEl), detailEl);

  root = h('section', { id: 'page-alerts', class: 'page' },
    h('div', { class: 'toolbar' },
      h('h1', { text: 'Alerts' }),
      fSev, fRule, fEntity, fTriage, clearBtn,
      h('span', { class: 'spacer' }),
      h('span', { class: 'count-box' }, countEl, ' shown', countNote)),
    layoutEl);

  onFeed(onChange);
  document.addEventListener('keydown', onKey);
  if (feed.loaded) renderAll();
}

/** Route: #/alerts, #/alerts/<id>, #/alerts?rule=..&entity=..&severity=.. */
export function showAlerts(params) {
  visible = true;
  alertsPage();
  const q = params.query;
  let refilter = false;
  if (q.has('rule')) { fRule.value = q.get('rule'); refilter = true; }
  if (q.has('entity')) { fEntity.value = q.get('entity'); refilter = true; }
  if (q.has('severity')) { fSev.value = q.get('severity'); refilter = true; }
  if (refilter) renderAll();
  const id = params.rest[0];
  if (id) {
    if (feed.byId.has(id)) select(id, { updateUrl: false, scroll: true });
    else if (!feed.loaded) pendingOpen = id;
    else showStatus(`Alert ${id} is not among the ${feed.byId.size} recent alerts this console holds.`, 'error');
  }
}

export function hideAlerts() {
  visible = false;
}

// ---- filtering and rendering ---------------------------------------------------

function matches(a) {
  const min = fSev.value ? sevRank(fSev.value) : 0;
  if (sevRank(a.severity) < min) return false;
  const r = fRule.value.trim().toLowerCase();
  if (r && !(`${a.rule} ${a.detector}`.toLowerCase().includes(r))) return false;
  const e = fEntity.value.trim().toLowerCase();
  if (e && !(`${a.entity_kind || ''}:${a.entity || ''}`.toLowerCase().includes(e))) return false;
  const t = fTriage.value;
  if (t) {
    const st = a.triage?.state || 'open';
    if (t === 'unresolved' ? st === 'resolved' : st !== t) return false;
  }
  return true;
}

function sortedAlerts() {
  return [...feed.byId.values()].sort((x, y) => (y.seq || 0) - (x.seq || 0));
}

let matchedTotal = 0;

function renderAll() {
  if (!built) return;
  const all = sortedAlerts();
  const shown = all.filter(matches);
  matchedTotal = shown.length;
  const frag = document.createDocumentFragment();
  rows.clear();
  for (const a of shown.slice(0, MAX_ROWS)) {
    const tr = buildRow(a);
    rows.set(a.id, tr);
    frag.appendChild(tr);
  }
  clear(tbody).appendChild(frag);
  if (!shown.length) {
    tbody.appendChild(h('tr', { class: 'empty-row' }, h('td', { colspan: '7',
      text: feed.byId.size ? 'No alert matches the filters.' : (feed.loaded ? 'No alerts yet. New ones appear here as they fire.' : 'Loading alerts…') })));
  }
  updateCount(all.length);
}

function updateCount(total = feed.byId.size) {
  countEl.textContent = String(rows.size);
  const parts = [];
  if (matchedTotal > rows.size) parts.push(`newest ${rows.size} of ${matchedTotal} matching`);
  if (total !== rows.size) parts.push(`${total} held`);
  countNote.textContent = parts.length ? ` (${parts.join('; ')})` : '';
}

function buildRow(a) {
  const cls = [`sev-row-${a.severity}`];
  if (a.mode === 'shadow') cls.push('shadow');
  if (a.id === selectedId) cls.push('selected');
  const st = a.triage?.state || 'open';
  if (st === 'resolved') cls.push('resolved');
  return h('tr', { class: cls.join(' '), dataset: { alertId: a.id, seq: String(a.seq ?? '') } },
    h('td', { class: 'c-time mono', title: `first ${fmtTime(a.time)}, last ${fmtTime(a.last_time)} (KST)`, text: fmtTimeShort(a.time) }),
    h('td', { class: 'c-sev' }, sevBadge(a.severity)),
    h('td', { class: 'c-rule', title: `${a.detector}: ${a.rule}${a.mode === 'shadow' ? ' (shadow)' : ''}` },
      a.mode === 'shadow' ? h('span', { class: 'tag tag-shadow', title: 'Shadow rule: what it would have done; nothing was enforced', text: 'shadow' }) : null,
      a.detector && a.detector !== 'rules' ? h('span', { class: 'tag', text: a.detector }) : null,
      h('span', { class: 'rule-name', text: a.rule })),
    h('td', { class: 'c-entity' }, a.entity
      ? [h('span', { class: 'kind', text: a.entity_kind || '' }), h('span', { class: 'mono', text: a.entity })]
      : h('span', { class: 'muted', text: '—' })),
    h('td', { class: 'c-action' }, actionTag(a)),
    h('td', { class: 'c-count num', text: fmtNum(a.count) }),
    h('td', { class: 'c-triage' }, triageCell(a.triage)));
}

function actionTag(a) {
  const k = actionKind(a.action);
  const text = fmtAction(a.action) || '—';
  if (a.mode === 'shadow') return h('span', { class: `act act-${k || 'none'} act-shadow`, title: 'Shadow: what it would have done', text: `would ${text}` });
  return h('span', { class: `act act-${k || 'none'}`, text });
}

function triageCell(t) {
  const st = t?.state || 'open';
  return h('span', { class: `tri tri-${st}`, title: t ? `${triageText(t)}${t.at ? ` at ${fmtTime(t.at)}` : ''}${t.note ? `\n${t.note}` : ''}` : 'not triaged' },
    st,
    t?.label ? h('span', { class: `lbl lbl-${t.label}`, text: t.label === 'true_positive' ? 'TP' : t.label === 'false_positive' ? 'FP' : t.label }) : null,
    t?.note ? h('span', { class: 'note-mark', title: t.note, text: '✎' }) : null);
}

function onChange({ added, updated, reset }) {
  if (!built) return;
  if (reset || added.length > 300) {
    renderAll();
  } else {
    const top = tbody.querySelector('tr[data-alert-id]');
    const topSeq = top ? Number(top.dataset.seq) : 0;
    const fresh = added.filter(matches).sort((x, y) => x.seq - y.seq);
    if (fresh.some((a) => a.seq < topSeq)) {
      renderAll();
    } else {
      const empty = tbody.querySelector('tr.empty-row');
      if (empty && fresh.length) empty.remove();
      const holdTop = wrapEl.scrollTop;
      let inserted = 0;
      for (const a of fresh) {
        const tr = buildRow(a);
        tr.classList.add('fresh');
        rows.set(a.id, tr);
        tbody.insertBefore(tr, tbody.firstChild);
        inserted += 1;
        matchedTotal += 1;
      }
      while (rows.size > MAX_ROWS) {
        const last = tbody.lastElementChild;
        if (!last) break;
        rows.delete(last.dataset.alertId);
        last.remove();
      }
      // Keep what the analyst is reading in place when they have scrolled down.
      if (inserted && holdTop > 0 && wrapEl.scrollTop === holdTop) {
        wrapEl.scrollTop = holdTop + inserted * (tbody.firstChild?.offsetHeight || 24);
      }
      for (const a of updated) {
        const old = rows.get(a.id);
        if (!old) continue;
        if (!matches(a)) { old.remove(); rows.delete(a.id); matchedTotal -= 1; continue; }
        const tr = buildRow(a);
        old.replaceWith(tr);
        rows.set(a.id, tr);
      }
      updateCount();
    }
  }
  if (pendingOpen && feed.byId.has(pendingOpen)) {
    const id = pendingOpen;
    pendingOpen = null;
    select(id, { updateUrl: false, scroll: true });
  } else if (pendingOpen && feed.loaded && reset) {
    showStatus(`Alert ${pendingOpen} is not among the recent alerts this console holds.`, 'error');
    pendingOpen = null;
  }
  if (selectedId) {
    const a = updated.find((x) => x.id === selectedId);
    if (a) refreshDetailBits(a);
  }
}

// ---- selection and keyboard ---------------------------------------------------

function select(id, { updateUrl = true, scroll = false } = {}) {
  const a = feed.byId.get(id);
  if (!a) return;
  if (selectedId && rows.get(selectedId)) rows.get(selectedId).classList.remove('selected');
  selectedId = id;
  const tr = rows.get(id);
  if (tr) {
    tr.classList.add('selected');
    if (scroll) tr.scrollIntoView({ block: 'nearest' });
  }
  if (updateUrl) history.replaceState(null, '', `#/alerts/${encodeURIComponent(id)}`);
  renderDetail(a);
}

function closeDetail() {
  if (selectedId && rows.get(selectedId)) rows.get(selectedId).classList.remove('selected');
  selectedId = null;
  disposeChart(detailEl);
  clear(detailEl);
  detailEl.hidden = true;
  layoutEl.classList.remove('with-detail');
  history.replaceState(null, '', '#/alerts');
}

function onKey(e) {
  if (!visible || e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (e.target.tagName || '').toLowerCase();
  if (tag === 'input' || tag === 'textarea' || tag === 'select') {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  if (e.key === 'Escape' && selectedId) { closeDetail(); e.preventDefault(); return; }
  if (e.key === 'j' || e.key === 'k' || e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    const list = [...tbody.querySelectorAll('tr[data-alert-id]')];
    if (!list.length) return;
    let i = list.findIndex((r) => r.dataset.alertId === selectedId);
    const down = e.key === 'j' || e.key === 'ArrowDown';
    i = i < 0 ? 0 : Math.max(0, Math.min(list.length - 1, i + (down ? 1 : -1)));
    select(list[i].dataset.alertId, { scroll: true });
    e.preventDefault();
  }
}

// ---- detail ------------------------------------------------------------------

let triageStateEl = null;
let triageAtEl = null;
let triageButtons = {};
let noteEl = null;

function renderDetail(a) {
  disposeChart(detailEl);
  clear(detailEl);
  detailEl.hidden = false;
  layoutEl.classList.add('with-detail');
  detailEl.scrollTop = 0;

  const closeBtn = h('button', { type: 'button', id: 'detail-close', class: 'btn btn-small btn-quiet', title: 'Close (Esc)', text: 'Close ×', on: { click: closeDetail } });
  detailEl.appendChild(h('div', { class: 'detail-head' },
    sevBadge(a.severity),
    h('h2', { class: 'detail-title', text: a.rule }),
    a.mode === 'shadow' ? h('span', { class: 'tag tag-shadow', text: 'shadow' }) : null,
    h('span', { class: 'spacer' }),
    closeBtn));

  const kv = (k, v, cls) => [h('dt', { text: k }), h('dd', cls ? { class: cls } : null, v)];
  const kvWide = (k, v) => [h('dt', { text: k }), h('dd', { class: 'wide' }, v)];
  detailEl.appendChild(h('dl', { class: 'kv two' },
    kvWide('Rule', h('span', { class: 'mono', text: a.rule })),
    kv('Detector', a.detector || ''),
    kv('Rule version', h('span', { class: 'mono', text: a.version || '—' })),
    kv('Severity', sevBadge(a.severity)),
    kv('Score', fmtNum(a.score)),
    kv('Mode', a.mode === 'shadow' ? 'shadow (not enforced)' : (a.mode || '')),
    kv('Action', actionTag(a)),
    kv('First', h('span', { class: 'mono', text: fmtTime(a.time) })),
    kv('Last', h('span', { class: 'mono', id: 'detail-last', text: fmtTime(a.last_time) })),
    kv('Count', h('span', { id: 'detail-count', text: fmtNum(a.count) })),
    kv('Event', h('span', { class: 'mono', id: 'detail-event', text: a.event_id || '' })),
    kvWide('Alert', h('span', { class: 'mono', text: `${a.id} · seq ${a.seq}` }))));
  detailEl.appendChild(h('dl', { class: 'kv entity-kv' },
    kv('Entity', a.entity ? [entityLink(a.entity_kind, a.entity), ' ',
      h('a', { class: 'small', href: `#/alerts?entity=${encodeURIComponent(a.entity)}`, text: 'all its alerts' }),
      session.may('change_blocks') ? [' · ', h('a', { class: 'small', title: 'Suppress this rule on this entity', href: `#/blocks?scope=${encodeURIComponent(a.entity_kind)}&key=${encodeURIComponent(a.entity)}&rule=${encodeURIComponent(a.rule)}`, text: 'suppress…' })] : null]
      : h('span', { class: 'muted', text: 'none' }))));

  detailEl.appendChild(triageSection(a));

  // Evidence
  const ev = Array.isArray(a.evidence) ? a.evidence : [];
  const hasWeights = ev.some((e) => typeof e.weight === 'number');
  detailEl.appendChild(h('h3', { text: hasWeights ? 'Evidence and model contributions' : 'Evidence (feature values at fire time)' }));
  if (ev.length) {
    detailEl.appendChild(table({ id: 'evidence', class: 'grid compact' },
      ['Feature', { text: 'Value', attrs: { class: 'num' } }, hasWeights ? { text: 'Contribution (weight)', attrs: { class: 'num', title: 'The feature\'s contribution to the anomaly score' } } : null].filter(Boolean),
      ev.map((e) => h('tr', null,
        h('td', { class: 'mono', text: e.feature }),
        h('td', { class: 'num', title: String(e.value), text: fmtNum(e.value) }),
        hasWeights ? h('td', { class: 'num', text: typeof e.weight === 'number' ? fmtNum(e.weight) : '—' }) : null))));
  } else {
    detailEl.appendChild(empty('No evidence recorded.'));
  }
  if (hasWeights) {
    const weighted = ev.filter((e) => typeof e.weight === 'number').sort((x, y) => Math.abs(x.weight) - Math.abs(y.weight));
    const chartEl = h('div', { id: 'contrib-chart', class: 'chart', style: `height:${Math.max(110, 34 + weighted.length * 26)}px` });
    detailEl.appendChild(chartEl);
    makeChart(chartEl, {
      grid: { left: 8, right: 40, top: 8, bottom: 20, containLabel: true },
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v) => fmtNum(v) },
      xAxis: { type: 'value', name: '', splitLine: { lineStyle: { color: '#e6e8ec' } }, axisLabel: { color: '#5b6675', fontSize: 11 } },
      yAxis: { type: 'category', data: weighted.map((e) => e.feature), axisLabel: { color: '#1c2430', fontSize: 11, fontFamily: 'ui-monospace, Consolas, monospace' }, axisTick: { show: false } },
      series: [{
        type: 'bar', barMaxWidth: 16,
        data: weighted.map((e) => ({ value: e.weight, itemStyle: { color: e.weight >= 0 ? '#2f5d8a' : '#9aa4b1' } })),
        label: { show: true, position: 'right', fontSize: 11, color: '#3c4654', formatter: (p) => fmtNum(p.value) },
      }],
      animation: false,
    });
  }

  // The entity's recent events
  detailEl.appendChild(h('h3', null, 'Recent events of ', a.entity ? entityLink(a.entity_kind, a.entity) : 'the entity'));
  const evBox = h('div', { id: 'alert-events', class: 'events-box' });
  detailEl.appendChild(evBox);
  if (!a.entity) {
    evBox.appendChild(empty('This alert names no entity.'));
  } else {
    evBox.appendChild(empty('Loading events…'));
    loadEvents(a, evBox);
  }
}

async function loadEvents(a, box) {
  const id = a.id;
  try {
    const list = await api(`/v1/entities/${encodeURIComponent(a.entity_kind)}/${encodeURIComponent(a.entity)}/events?limit=25`, { quiet: true });
    if (selectedId !== id) return;
    clear(box).appendChild(eventsTable(list || [], { highlight: a.event_id, skipKind: a.entity_kind }));
  } catch (e) {
    if (selectedId !== id) return;
    clear(box);
    if (e.status === 409) {
      box.appendChild(empty('Recent events need a data dir: this server runs without one (needs a data dir).'));
      showStatus(`Recent events: needs a data dir (${e.message}).`, 'info', 409);
    }
    else {
      box.appendChild(h('div', { class: 'error-box', text: `Could not load events: ${e.message}` }));
      showStatus(`Events of ${a.entity_kind} ${a.entity}: ${e.message}`, 'error', e.status);
    }
  }
}

const EVENT_COLS = ['ts', 'step', 'result', 'failure_reason', 'channel', 'ip', 'device_id', 'customer_id', 'session_id', 'staff_id', 'records', 'id_doc_hash', 'account_hash', 'region', 'duration_ms', 'event_id'];
const COL_TITLE = { ts: 'Time (KST)', failure_reason: 'failure', duration_ms: 'ms', id_doc_hash: 'id_doc', account_hash: 'account', device_id: 'device', customer_id: 'customer', session_id: 'session', staff_id: 'staff' };

/** A table of raw events; entity fields link to the explorer. */
export function eventsTable(list, { highlight = null, skipKind = null, id = null } = {}) {
  if (!list.length) return empty('No events of this entity in the ingest log.');
  const present = new Set();
  for (const ev of list) for (const k of Object.keys(ev)) present.add(k);
  const skipField = Object.entries(FIELD_KIND).find(([, k]) => k === skipKind)?.[0];
  const cols = EVENT_COLS.filter((c) => present.has(c) && c !== skipField && c !== 'user_agent');
  for (const k of present) if (!cols.includes(k) && k !== skipField && k !== 'user_agent') cols.push(k);
  return h('div', { class: 'table-wrap events-wrap' }, table({ class: 'grid compact events', id },
    cols.map((c) => ({ text: COL_TITLE[c] || c, attrs: { class: numCol(c) ? 'num' : '' } })),
    list.map((ev) => h('tr', { class: ev.event_id === highlight ? 'hl' : (ev.result && ev.result !== 'success' ? 'failed' : '') ,
      title: ev.user_agent ? `user agent: ${ev.user_agent}` : null },
      cols.map((c) => eventCell(c, ev[c]))))));
}

function numCol(c) { return c === 'records' || c === 'duration_ms'; }

function eventCell(col, v) {
  if (v === undefined || v === null || v === '') return h('td', { class: 'muted', text: '' });
  if (col === 'ts') return h('td', { class: 'mono nowrap', title: String(v), text: fmtTime(v) });
  if (FIELD_KIND[col] && typeof v === 'string') return h('td', { class: 'nowrap' }, entityLink(FIELD_KIND[col], v, { showKind: false }));
  if (col === 'result') return h('td', { class: v === 'success' ? 'ok' : 'bad', text: String(v) });
  if (typeof v === 'number') return h('td', { class: 'num', text: fmtNum(v) });
  if (typeof v === 'object') return h('td', { class: 'mono', text: JSON.stringify(v) });
  return h('td', { class: col === 'event_id' ? 'mono nowrap' : 'nowrap', text: String(v) });
}

// ---- triage --------------------------------------------------------------------

function triageSection(a) {
  const t = a.triage;
  triageStateEl = h('span', { id: 'triage-state', class: `tri-state tri-${t?.state || 'open'}`, text: triageText(t) });
  triageAtEl = h('span', { class: 'muted', text: t?.at ? ` at ${fmtTime(t.at)}` : '' });
  const box = h('div', { class: 'triage-box' },
    h('div', { class: 'triage-line' }, h('strong', { text: 'Triage ' }), triageStateEl, triageAtEl));
  triageButtons = {};
  noteEl = null;
  if (!session.may('triage')) {
    if (t?.note) box.appendChild(h('div', { class: 'note-view', text: t.note }));
    box.appendChild(h('div', { class: 'muted small', text: `Your role (${session.me?.role}) may read but not triage alerts.` }));
    return box;
  }
  const mk = (id, text, change, cls = '') => {
    const b = h('button', { type: 'button', id, class: `btn btn-small ${cls}`, text, on: { click: () => doTriage(a.id, change) } });
    triageButtons[id] = b;
    return b;
  };
  box.appendChild(h('div', { class: 'btn-row' },
    mk('ack', 'Acknowledge', { state: 'acknowledged' }),
    mk('resolve', 'Resolve', { state: 'resolved' }),
    mk('mark-tp', 'True positive', { label: 'true_positive' }, 'btn-tp'),
    mk('mark-fp', 'False positive', { label: 'false_positive' }, 'btn-fp'),
    mk('reopen', 'Reopen', { state: 'open' }, 'btn-quiet')));
  noteEl = h('textarea', { id: 'triage-note', rows: '2', maxlength: '2000', placeholder: 'Note (saved with the next triage action; never a resident registration number)', value: t?.note || '' });
  box.appendChild(noteEl);
  box.appendChild(h('div', { class: 'btn-row' },
    h('button', { type: 'button', id: 'triage-save-note', class: 'btn btn-small btn-quiet', text: 'Save note only', on: { click: () => doTriage(a.id, {}) } })));
  markButtons(t);
  return box;
}

function markButtons(t) {
  const st = t?.state || 'open';
  const on = { ack: st === 'acknowledged', resolve: st === 'resolved', 'mark-tp': t?.label === 'true_positive', 'mark-fp': t?.label === 'false_positive', reopen: false };
  for (const [id, b] of Object.entries(triageButtons)) {
    b.classList.toggle('on', !!on[id]);
    b.setAttribute('aria-pressed', on[id] ? 'true' : 'false');
  }
}

async function doTriage(id, change) {
  const a = feed.byId.get(id);
  const body = { ...change };
  if (noteEl) {
    const note = noteEl.value.trim();
    if (note !== (a?.triage?.note || '')) body.note = note;
  }
  if (!Object.keys(body).length) { showStatus('Nothing to save: the note is unchanged.', 'info'); return; }
  for (const b of Object.values(triageButtons)) b.disabled = true;
  try {
    const t = await api(`/v1/alerts/${encodeURIComponent(id)}/triage`, { method: 'POST', json: body });
    setTriage(id, t);
    if (selectedId === id) refreshDetailBits(feed.byId.get(id));
    showStatus(`Alert ${a?.rule || id}: ${triageText(t)}`, 'ok');
  } catch {
    // shown in #status
  } finally {
    for (const b of Object.values(triageButtons)) b.disabled = false;
  }
}

/** Update what changes in an open detail without re-rendering it (keeps the note being typed). */
function refreshDetailBits(a) {
  if (!a || detailEl.hidden) return;
  if (triageStateEl) {
    triageStateEl.textContent = triageText(a.triage);
    triageStateEl.className = `tri-state tri-${a.triage?.state || 'open'}`;
  }
  if (triageAtEl) triageAtEl.textContent = a.triage?.at ? ` at ${fmtTime(a.triage.at)}` : '';
  markButtons(a.triage);
  const c = detailEl.querySelector('#detail-count');
  if (c) c.textContent = fmtNum(a.count);
  const l = detailEl.querySelector('#detail-last');
  if (l) l.textContent = fmtTime(a.last_time);
}

export function alertsForEntity(kind, key) {
  return sortedAlerts().filter((a) => a.entity_kind === kind && a.entity === key);
}

