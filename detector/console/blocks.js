// Blocks and suppressions: what is blocked now, what is suppressed, and a
// form to suppress an entity (which lifts the blocks it covers).

import { h, clear, fmtTime, fmtDuration, KINDS, entityLink, table, empty, debounce } from './dom.js';
import { api, session, showStatus } from './api.js';

let built = false;
let root, blocksBox, supBox, filterInput, supResult, blocksCount, supCount;
let form = {};
let lastBlocks = [];
let lastSups = [];

export function showBlocks(params) {
  if (!built) build();
  const q = params.query;
  if (form.scope && q.has('scope') && KINDS.includes(q.get('scope'))) form.scope.value = q.get('scope');
  if (form.key && q.has('key')) form.key.value = q.get('key');
  if (form.rule && q.has('rule')) form.rule.value = q.get('rule');
  if (form.reason && q.has('key')) form.reason.focus();
  refresh();
  return root;
}

export function blocksPage() {
  if (!built) build();
  return root;
}

function build() {
  built = true;
  filterInput = h('input', { id: 'blocks-filter', type: 'search', placeholder: 'Filter by key, scope, reason, set by…', autocomplete: 'off' });
  filterInput.addEventListener('input', debounce(() => { renderBlocks(); renderSups(); }, 120));
  const refreshBtn = h('button', { type: 'button', id: 'blocks-refresh', class: 'btn', text: 'Refresh', on: { click: refresh } });
  blocksCount = h('span', { class: 'muted' });
  supCount = h('span', { class: 'muted' });
  blocksBox = h('div', { class: 'table-wrap blocks-wrap' });
  supBox = h('div', { class: 'table-wrap' });
  supResult = h('div', { id: 'sup-result' });

  const canChange = session.may('change_blocks');
  const supForm = canChange ? buildForm() : h('div', { class: 'muted', text: `Your role (${session.me?.role}) may read blocks and suppressions but not change them.` });

  root = h('section', { id: 'page-blocks', class: 'page' },
    h('div', { class: 'toolbar' }, h('h1', { text: 'Blocks & suppressions' }), filterInput, refreshBtn),
    h('div', { class: 'panel' }, h('h3', null, 'Active blocks ', blocksCount), blocksBox),
    h('div', { class: 'blocks-lower' },
      h('div', { class: 'panel' }, h('h3', null, 'Suppressions ', supCount),
        h('p', { class: 'muted small', text: 'A suppression keeps rules from alerting or blocking on an entity (optionally for one rule only) until it expires or is ended.' }),
        supBox),
      h('div', { class: 'panel sup-form-panel' }, h('h3', { text: 'Suppress an entity' }), supForm, supResult)));
}

function buildForm() {
  form.scope = h('select', { id: 'sup-scope' }, KINDS.map((k) => h('option', { value: k, text: k })));
  form.key = h('input', { id: 'sup-key', type: 'text', placeholder: 'Entity key', autocomplete: 'off', spellcheck: 'false' });
  form.rule = h('input', { id: 'sup-rule', type: 'text', placeholder: 'Only this rule (optional; empty = all rules)', autocomplete: 'off', spellcheck: 'false' });
  form.ttl = h('input', { id: 'sup-ttl', type: 'number', min: '1', step: '1', value: '604800', title: 'Seconds (604800 = 7 days)' });
  form.reason = h('input', { id: 'sup-reason', type: 'text', placeholder: 'Reason (kept in the audit log)', maxlength: '500' });
  const add = h('button', { type: 'button', id: 'sup-add', class: 'btn btn-primary', text: 'Add suppression' });
  const ttlHint = h('span', { class: 'muted small', text: fmtDuration(604800) });
  form.ttl.addEventListener('input', () => { ttlHint.textContent = fmtDuration(Number(form.ttl.value)); });
  add.addEventListener('click', async () => {
    const key = form.key.value.trim();
    const ttl_s = Number(form.ttl.value);
    if (!key) { showStatus('Suppression: give the entity key.', 'error'); form.key.focus(); return; }
    if (!Number.isInteger(ttl_s) || ttl_s < 1) { showStatus('Suppression: TTL is a whole number of seconds, 1 or more.', 'error'); form.ttl.focus(); return; }
    if (!form.reason.value.trim()) { showStatus('Suppression: give a reason.', 'error'); form.reason.focus(); return; }
    const body = { scope: form.scope.value, key, ttl_s, reason: form.reason.value.trim() };
    if (form.rule.value.trim()) body.rule = form.rule.value.trim();
    add.disabled = true;
    try {
      const res = await api('/v1/suppressions', { method: 'POST', json: body });
      const s = res?.suppression || {};
      const lifted = Array.isArray(res?.lifted) ? res.lifted : [];
      clear(supResult).appendChild(h('div', { class: 'result-box ok' },
        h('div', null, 'Added ', h('span', { class: 'mono', text: s.id || '' }), ` on ${s.scope} `, h('span', { class: 'mono', text: s.key || '' }),
          s.rule ? ` for rule ${s.rule}` : ' for all rules', `, until ${fmtTime(s.expires_at_ms)}.`),
        lifted.length
          ? [h('div', { text: `It lifted ${lifted.length} block${lifted.length === 1 ? '' : 's'}:` }),
            h('ul', { class: 'lifted' }, lifted.map((b) => h('li', null, entityLink(b.scope, b.key), ` — set by ${b.set_by}, ${b.reason}`)))]
          : h('div', { class: 'muted', text: 'It lifted no block.' })));
      showStatus(`Suppression added${lifted.length ? `; ${lifted.length} block(s) lifted` : ''}.`, 'ok');
      refresh();
    } catch { /* in #status */ } finally { add.disabled = false; }
  });
  return h('div', { class: 'form-grid' },
    h('label', { for: 'sup-scope', text: 'Scope' }), form.scope,
    h('label', { for: 'sup-key', text: 'Key' }), form.key,
    h('label', { for: 'sup-rule', text: 'Rule' }), form.rule,
    h('label', { for: 'sup-ttl', text: 'TTL (s)' }), h('div', { class: 'inline' }, form.ttl, ttlHint),
    h('label', { for: 'sup-reason', text: 'Reason' }), form.reason,
    h('span'), h('div', { class: 'btn-row' }, add));
}

async function refresh() {
  const [b, s] = await Promise.allSettled([api('/v1/blocks'), api('/v1/suppressions')]);
  if (b.status === 'fulfilled') { lastBlocks = b.value || []; renderBlocks(); }
  else clear(blocksBox).appendChild(h('div', { class: 'error-box', text: b.reason?.message || 'failed' }));
  if (s.status === 'fulfilled') { lastSups = s.value || []; renderSups(); }
  else clear(supBox).appendChild(h('div', { class: 'error-box', text: s.reason?.message || 'failed' }));
}

function filt(text) {
  const f = filterInput.value.trim().toLowerCase();
  return !f || text.toLowerCase().includes(f);
}

function renderBlocks() {
  const canChange = session.may('change_blocks');
  const list = lastBlocks.filter((b) => filt(`${b.scope} ${b.key} ${b.reason} ${b.set_by}`))
    .sort((x, y) => String(y.set_at).localeCompare(String(x.set_at)));
  blocksCount.textContent = `(${list.length}${list.length !== lastBlocks.length ? ` of ${lastBlocks.length}` : ''})`;
  clear(blocksBox).appendChild(table({ id: 'blocks', class: 'grid compact' },
    ['Scope', 'Key', 'Set by', 'Reason', 'Set at (KST)', 'Expires (KST)', { text: 'Left', attrs: { class: 'num' } }, { text: 'Offense', attrs: { class: 'num' } }, canChange ? '' : null].filter((x) => x !== null),
    list.map((b) => h('tr', { dataset: { blockKey: b.key, blockScope: b.scope }, class: String(b.set_by).startsWith('analyst:') ? 'manual' : '' },
      h('td', null, h('span', { class: 'kind', text: b.scope })),
      h('td', { class: 'nowrap' }, entityLink(b.scope, b.key, { showKind: false })),
      h('td', { class: 'mono small', text: b.set_by }),
      h('td', { text: b.reason }),
      h('td', { class: 'mono nowrap', text: fmtTime(b.set_at) }),
      h('td', { class: 'mono nowrap', text: fmtTime(b.expires_at) }),
      h('td', { class: 'num nowrap', text: fmtDuration(b.ttl_s) }),
      h('td', { class: 'num', text: String(b.offense) }),
      canChange ? h('td', null, h('button', { type: 'button', class: 'btn btn-small lift', text: 'Lift', on: { click: (e) => lift(b, e.currentTarget) } })) : null))));
  if (!list.length) blocksBox.appendChild(empty(lastBlocks.length ? 'No block matches the filter.' : 'Nothing is blocked.'));
}

async function lift(b, btn) {
  btn.disabled = true;
  try {
    await api(`/v1/blocks/${encodeURIComponent(b.scope)}/${encodeURIComponent(b.key)}`, { method: 'DELETE', as: 'none' });
    showStatus(`Lifted the block on ${b.scope} ${b.key}.`, 'ok');
    lastBlocks = lastBlocks.filter((x) => !(x.scope === b.scope && x.key === b.key));
    renderBlocks();
  } catch { btn.disabled = false; }
}

function renderSups() {
  const canChange = session.may('change_blocks');
  const list = lastSups.filter((s) => filt(`${s.scope} ${s.key} ${s.rule || ''} ${s.reason} ${s.set_by} ${s.id}`))
    .sort((x, y) => (y.set_at_ms || 0) - (x.set_at_ms || 0));
  supCount.textContent = `(${list.length}${list.length !== lastSups.length ? ` of ${lastSups.length}` : ''})`;
  clear(supBox).appendChild(table({ id: 'suppressions', class: 'grid compact' },
    ['Scope', 'Key', 'Rule', 'Reason', 'Set by', 'Set at (KST)', 'Expires (KST)', { text: 'Hits', attrs: { class: 'num' } }, canChange ? '' : null].filter((x) => x !== null),
    list.map((s) => h('tr', { dataset: { suppressionId: s.id }, title: s.id },
      h('td', null, h('span', { class: 'kind', text: s.scope })),
      h('td', { class: 'nowrap' }, entityLink(s.scope, s.key, { showKind: false })),
      h('td', { class: s.rule ? 'mono small' : 'muted', text: s.rule || 'all rules' }),
      h('td', { text: s.reason }),
      h('td', { class: 'mono small', text: s.set_by }),
      h('td', { class: 'mono nowrap', text: fmtTime(s.set_at_ms) }),
      h('td', { class: 'mono nowrap', text: fmtTime(s.expires_at_ms) }),
      h('td', { class: 'num', text: String(s.hits ?? 0) }),
      canChange ? h('td', null, h('button', { type: 'button', class: 'btn btn-small end', text: 'End', on: { click: (e) => endSup(s, e.currentTarget) } })) : null))));
  if (!list.length) supBox.appendChild(empty(lastSups.length ? 'No suppression matches the filter.' : 'No suppressions.'));
}

async function endSup(s, btn) {
  btn.disabled = true;
  try {
    await api(`/v1/suppressions/${encodeURIComponent(s.id)}`, { method: 'DELETE', as: 'none' });
    showStatus(`Ended suppression ${s.id} on ${s.scope} ${s.key}.`, 'ok');
    lastSups = lastSups.filter((x) => x.id !== s.id);
    renderSups();
  } catch { btn.disabled = false; }
}
