// Entity explorer: an entity's features, block state and recent events; with
// change_blocks, setting and lifting its block.

import { h, clear, fmtTime, fmtNum, fmtDuration, sevBadge, KINDS, triageText, table, empty } from './dom.js';
import { api, session, showStatus } from './api.js';
import { eventsTable, alertsForEntity } from './alerts.js';

let root, kindSel, keyInput, result;
let built = false;
let current = null; // {kind, key}
let loadToken = 0;

export function showEntity(params) {
  if (!built) build();
  const [kind, key] = params.rest;
  if (kind && key !== undefined && key !== '') {
    if (KINDS.includes(kind)) kindSel.value = kind;
    keyInput.value = key;
    load(kind, key);
  } else if (!current) {
    keyInput.focus();
  }
  return root;
}

export function entityPage() {
  if (!built) build();
  return root;
}

function build() {
  built = true;
  kindSel = h('select', { id: 'entity-kind', title: 'Entity kind' }, KINDS.map((k) => h('option', { value: k, text: k })));
  keyInput = h('input', { id: 'entity-key', type: 'search', placeholder: 'Key: an address, device id, customer id, 211.234.120.0/24 …', autocomplete: 'off', spellcheck: 'false' });
  const go = h('button', { type: 'button', id: 'entity-go', class: 'btn btn-primary', text: 'Look up' });
  const submit = () => {
    const kind = kindSel.value;
    const key = keyInput.value.trim();
    if (!key) { showStatus('Type an entity key to look up.', 'error'); keyInput.focus(); return; }
    const target = `#/entity/${encodeURIComponent(kind)}/${encodeURIComponent(key)}`;
    if (location.hash === target) load(kind, key);
    else location.hash = target;
  };
  go.addEventListener('click', submit);
  keyInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') submit(); });
  result = h('div', { id: 'entity-result' }, empty('Look up an entity by kind and key, or follow an entity link from an alert.'));
  root = h('section', { id: 'page-entity', class: 'page' },
    h('div', { class: 'toolbar' }, h('h1', { text: 'Entity explorer' }), kindSel, keyInput, go),
    result);
}

async function load(kind, key) {
  const my = ++loadToken;
  current = { kind, key };
  clear(result).appendChild(empty(`Loading ${kind} ${key}…`));
  const base = `/v1/entities/${encodeURIComponent(kind)}/${encodeURIComponent(key)}`;
  let ent = null;
  let unknown = null;
  try {
    ent = await api(base, { quiet: true });
  } catch (e) {
    if (e.status === 404) unknown = e.message;
    else {
      if (my !== loadToken) return;
      showStatus(`${kind} ${key}: ${e.message}`, 'error', e.status);
      clear(result).appendChild(h('div', { class: 'error-box', text: e.message }));
      return;
    }
  }
  if (my !== loadToken) return;
  let block = ent ? ent.block : null;
  if (!ent) {
    // Unknown to the feature store; a block may still be set on it.
    try {
      const blocks = await api('/v1/blocks', { quiet: true });
      block = (blocks || []).find((b) => b.scope === kind && b.key === key) || null;
    } catch { /* shown below as not known */ }
  }
  if (my !== loadToken) return;
  render(kind, key, ent, unknown, block);
  loadEvents(kind, key, base, my);
}

function render(kind, key, ent, unknown, block) {
  clear(result);
  result.appendChild(h('div', { class: 'entity-head' },
    h('span', { class: 'kind big', text: kind }),
    h('h2', { class: 'mono', text: key }),
    unknown ? h('span', { class: 'tag', text: 'no feature state' }) : null));

  // Left: features. Right: block, alerts, events.
  const left = h('div', { class: 'panel' }, h('h3', { text: 'Features' }));
  if (ent && ent.features && Object.keys(ent.features).length) {
    const names = Object.keys(ent.features).sort();
    left.appendChild(h('div', { class: 'table-wrap features-wrap' }, table({ id: 'entity-features', class: 'grid compact' },
      ['Feature', { text: 'Value', attrs: { class: 'num' } }],
      names.map((n) => h('tr', null,
        h('td', { class: 'mono', text: n }),
        h('td', { class: 'num', title: String(ent.features[n]), text: fmtNum(ent.features[n]) }))))));
  } else {
    left.appendChild(empty(unknown ? `The feature store has no state for this entity (${unknown}).` : 'No features.'));
  }

  const blockBox = h('div', { class: 'panel' }, h('h3', { text: 'Block' }));
  const blockState = h('div', { id: 'entity-block', class: `block-state ${block ? 'blocked' : 'not-blocked'}` });
  fillBlock(blockState, block);
  blockBox.appendChild(blockState);
  if (session.may('change_blocks')) blockBox.appendChild(blockControls(kind, key, block, blockState));

  const alertsBox = h('div', { class: 'panel' }, h('h3', { text: 'Alerts on this entity (in the console\'s feed)' }));
  const list = alertsForEntity(kind, key).slice(0, 30);
  if (list.length) {
    alertsBox.appendChild(h('div', { class: 'table-wrap', id: 'entity-alerts-wrap' }, table({ class: 'grid compact clickable', id: 'entity-alerts' },
      ['Time (KST)', 'Severity', 'Rule', { text: 'Count', attrs: { class: 'num' } }, 'Triage'],
      list.map((a) => h('tr', { dataset: { alertId: a.id }, on: { click: () => { location.hash = `#/alerts/${encodeURIComponent(a.id)}`; } } },
        h('td', { class: 'mono nowrap', text: fmtTime(a.time) }),
        h('td', null, sevBadge(a.severity)),
        h('td', { text: a.rule }),
        h('td', { class: 'num', text: fmtNum(a.count) }),
        h('td', { text: triageText(a.triage) }))))));
  } else {
    alertsBox.appendChild(empty('None among the recent alerts.'));
  }

  const eventsBox = h('div', { class: 'panel' }, h('h3', { text: 'Recent events (newest first)' }),
    h('div', { id: 'entity-events-box' }, empty('Loading events…')));

  result.appendChild(h('div', { class: 'entity-layout' },
    h('div', { class: 'entity-left' }, left),
    h('div', { class: 'entity-right' }, blockBox, alertsBox, eventsBox)));
}

function fillBlock(el, block) {
  clear(el);
  el.className = `block-state ${block ? 'blocked' : 'not-blocked'}`;
  if (!block) {
    el.appendChild(h('span', { class: 'state-word', text: 'not blocked' }));
    return;
  }
  el.appendChild(h('span', { class: 'state-word', text: 'blocked' }));
  el.appendChild(h('dl', { class: 'kv' },
    h('dt', { text: 'Set by' }), h('dd', { class: 'mono', text: block.set_by }),
    h('dt', { text: 'Reason' }), h('dd', { text: block.reason }),
    h('dt', { text: 'Set at' }), h('dd', { class: 'mono', text: fmtTime(block.set_at) }),
    h('dt', { text: 'Expires' }), h('dd', null, h('span', { class: 'mono', text: fmtTime(block.expires_at) }), ` (${fmtDuration(block.ttl_s)} left)`),
    h('dt', { text: 'Offense' }), h('dd', { text: String(block.offense) })));
}

function blockControls(kind, key, block, stateEl) {
  const ttl = h('input', { id: 'block-ttl', type: 'number', min: '1', max: '31622400', step: '1', value: '3600', title: 'Seconds' });
  const reason = h('input', { id: 'block-reason', type: 'text', placeholder: 'Reason (kept in the audit log)', maxlength: '500' });
  const set = h('button', { type: 'button', id: 'block-set', class: 'btn btn-danger', text: block ? 'Replace block' : 'Block' });
  const lift = h('button', { type: 'button', id: 'block-lift', class: 'btn', text: 'Lift block', disabled: !block });
  const presets = h('span', { class: 'presets' }, [['1h', 3600], ['4h', 14400], ['1d', 86400], ['7d', 604800]].map(([t, s]) =>
    h('button', { type: 'button', class: 'btn btn-small btn-quiet', text: t, on: { click: () => { ttl.value = String(s); } } })));
  const update = (b) => {
    fillBlock(stateEl, b);
    lift.disabled = !b;
    set.textContent = b ? 'Replace block' : 'Block';
  };
  set.addEventListener('click', async () => {
    const ttl_s = Number(ttl.value);
    if (!Number.isInteger(ttl_s) || ttl_s < 1) { showStatus('TTL: a whole number of seconds, 1 or more.', 'error'); ttl.focus(); return; }
    if (!reason.value.trim()) { showStatus('Give a reason for the block.', 'error'); reason.focus(); return; }
    set.disabled = true;
    try {
      const b = await api('/v1/blocks', { method: 'POST', json: { scope: kind, key, ttl_s, reason: reason.value.trim() } });
      update(b);
      showStatus(`Blocked ${kind} ${key} for ${fmtDuration(b.ttl_s)}.`, 'ok');
    } catch { /* in #status */ } finally { set.disabled = false; }
  });
  lift.addEventListener('click', async () => {
    lift.disabled = true;
    try {
      await api(`/v1/blocks/${encodeURIComponent(kind)}/${encodeURIComponent(key)}`, { method: 'DELETE', as: 'none' });
      update(null);
      showStatus(`Lifted the block on ${kind} ${key}.`, 'ok');
    } catch { lift.disabled = false; }
  });
  return h('div', { class: 'form-grid' },
    h('label', { for: 'block-ttl', text: 'TTL (s)' }), h('div', { class: 'inline' }, ttl, presets),
    h('label', { for: 'block-reason', text: 'Reason' }), reason,
    h('span'), h('div', { class: 'btn-row' }, set, lift));
}

async function loadEvents(kind, key, base, my) {
  const box = () => document.getElementById('entity-events-box');
  try {
    const list = await api(`${base}/events?limit=50`, { quiet: true });
    if (my !== loadToken || !box()) return;
    clear(box()).appendChild(eventsTable(list || [], { skipKind: kind, id: 'entity-events' }));
  } catch (e) {
    if (my !== loadToken || !box()) return;
    clear(box());
    if (e.status === 409) {
      box().appendChild(empty('Recent events need a data dir: this server runs without one (needs a data dir).'));
      showStatus(`Recent events: needs a data dir (${e.message}).`, 'info', 409);
    }
    else {
      box().appendChild(h('div', { class: 'error-box', text: e.message }));
      showStatus(`Events of ${kind} ${key}: ${e.message}`, 'error', e.status);
    }
  }
}

