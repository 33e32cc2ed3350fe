// Rule preview: backtest a candidate rule file against the live pack over
// the recent traffic in the ingest log. Nothing is changed on the server.

import { h, clear, fmtNum, fmtPct, fmtDuration, entityLink, table, empty } from './dom.js';
import { api, showStatus } from './api.js';

const EXAMPLE = `rules:
  - id: many_new_identities_on_one_address
    description: several new identities onboarding through one address
    severity: high
    when: features.event.onboarding_step == 1.0 && features.ip.distinct_new_identities_24h >= 3.0
    action: block
    scope: ip
    ttl: 1h
`;

let built = false;
let root, text, file, events, run, result;

export function showPreview() {
  if (!built) build();
  return root;
}

function build() {
  built = true;
  text = h('textarea', { id: 'preview-text', class: 'code', rows: '16', wrap: 'off', spellcheck: 'false', autocomplete: 'off', placeholder: `A rule file (YAML), e.g.\n\n${EXAMPLE}` });
  file = h('input', { id: 'preview-file', type: 'file', accept: '.yaml,.yml,.txt,text/yaml,text/plain' });
  events = h('input', { id: 'preview-events', type: 'number', min: '1', max: '500000', step: '1000', value: '50000', title: 'How many of the newest logged events to replay' });
  run = h('button', { type: 'button', id: 'preview-run', class: 'btn btn-primary', text: 'Run preview' });
  const example = h('button', { type: 'button', class: 'btn btn-quiet', id: 'preview-example', text: 'Insert example' });
  result = h('div', { id: 'preview-result' }, empty('The result of the backtest shows here. Nothing is changed on the server.'));

  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    if (f.size > 2_000_000) { showStatus(`${f.name} is larger than 2 MB; not a rule file?`, 'error'); return; }
    text.value = await f.text();
    showStatus(`Loaded ${f.name} (${fmtNum(f.size)} bytes).`, 'ok');
  });
  example.addEventListener('click', () => { text.value = EXAMPLE; text.focus(); });
  run.addEventListener('click', doRun);
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); doRun(); }
    if (e.key === 'Tab' && !e.shiftKey) { // indent with two spaces instead of leaving the field
      e.preventDefault();
      const s = text.selectionStart;
      text.setRangeText('  ', s, text.selectionEnd, 'end');
    }
  });

  root = h('section', { id: 'page-preview', class: 'page' },
    h('div', { class: 'toolbar' }, h('h1', { text: 'Rule preview' }),
      h('span', { class: 'muted', text: 'Backtest a candidate rule file beside the live pack on recent traffic.' })),
    h('div', { class: 'preview-layout' },
      h('div', { class: 'panel' },
        h('div', { class: 'inline wrap' },
          h('label', { for: 'preview-file', text: 'Load a file: ' }), file, example),
        text,
        h('div', { class: 'inline wrap' },
          h('label', { for: 'preview-events', text: 'Replay the newest' }), events, h('span', { text: 'events' }),
          h('span', { class: 'spacer' }), h('span', { class: 'muted small', text: 'Ctrl+Enter runs' }), run)),
      h('div', { class: 'panel' }, h('h3', { text: 'Result' }), result)));
}

async function doRun() {
  const body = text.value;
  if (!body.trim()) { showStatus('Paste or load a rule file first.', 'error'); text.focus(); return; }
  const n = Math.max(1, Math.min(500000, Number(events.value) || 50000));
  run.disabled = true;
  const started = performance.now();
  clear(result).appendChild(empty('Replaying… this can take a while on a large log.'));
  try {
    const rep = await api(`/v1/rules/preview?events=${n}`, { method: 'POST', text: body });
    render(rep, performance.now() - started);
  } catch (e) {
    clear(result);
    if (e.status === 400) {
      result.appendChild(h('div', { class: 'error-box' }, h('strong', { text: 'The rule file does not compile:' }), h('pre', { class: 'code', text: e.message })));
    } else if (e.status === 409) {
      result.appendChild(h('div', { class: 'error-box', text: `Needs a data dir: ${e.message}` }));
    } else {
      result.appendChild(h('div', { class: 'error-box', text: e.message }));
    }
  } finally {
    run.disabled = false;
  }
}

function stat(label, value, cls = '', title = null) {
  return h('div', { class: `stat ${cls}`, title }, h('div', { class: 'stat-value', text: value }), h('div', { class: 'stat-label', text: label }));
}

function render(rep, ms) {
  clear(result);
  const sum = rep.summary || {};
  const base = rep.baseline || {};
  const flaggedShare = sum.events ? sum.flagged / sum.events : null;
  result.appendChild(h('div', { class: 'muted small', text: `Candidate pack ${rep.version || '?'} · replayed in ${(ms / 1000).toFixed(1)} s` }));

  result.appendChild(h('h4', { text: 'Summary' }));
  result.appendChild(h('div', { class: 'stats', id: 'preview-summary' },
    stat('events replayed', fmtNum(sum.events)),
    stat('events flagged', fmtNum(sum.flagged), '', flaggedShare !== null ? fmtPct(flaggedShare) : null),
    sum.incident_recall !== undefined && sum.incident_recall !== null ? stat('incident recall', fmtPct(sum.incident_recall)) : null,
    sum.false_positive_rate !== undefined && sum.false_positive_rate !== null ? stat('false positive rate', fmtPct(sum.false_positive_rate, 2)) : null));

  result.appendChild(h('h4', { text: 'Against the live pack' }));
  const newly = Array.isArray(base.entities_newly_blocked) ? base.entities_newly_blocked : [];
  const noLonger = base.entities_no_longer_blocked;
  const noLongerCount = Array.isArray(noLonger) ? noLonger.length : noLonger;
  result.appendChild(h('div', { class: 'stats', id: 'preview-baseline' },
    stat('alerts gained', signed(base.alerts_gained, '+'), base.alerts_gained ? 'up' : ''),
    stat('alerts lost', signed(base.alerts_lost, '−'), base.alerts_lost ? 'down' : ''),
    stat('entities newly blocked', fmtNum(newly.length), newly.length ? 'up' : ''),
    stat('entities no longer blocked', fmtNum(noLongerCount), noLongerCount ? 'down' : ''),
    base.false_positives_removed !== undefined ? stat('false positives removed', fmtNum(base.false_positives_removed), base.false_positives_removed ? 'good' : '') : null,
    base.true_positives_lost !== undefined ? stat('true positives lost', fmtNum(base.true_positives_lost), base.true_positives_lost ? 'bad' : '') : null));
  if (newly.length) {
    result.appendChild(h('details', { class: 'entity-list' },
      h('summary', { text: `Entities the candidate would newly block (${newly.length})` }),
      h('ul', { class: 'chips' }, newly.map((e) => h('li', null, chipFor(e))))));
  }
  if (Array.isArray(noLonger) && noLonger.length) {
    result.appendChild(h('details', { class: 'entity-list' },
      h('summary', { text: `Entities no longer blocked (${noLonger.length})` }),
      h('ul', { class: 'chips' }, noLonger.map((e) => h('li', null, chipFor(e))))));
  }

  result.appendChild(h('h4', { text: 'Per rule' }));
  const rules = Array.isArray(rep.rules) ? rep.rules : [];
  if (!rules.length) { result.appendChild(empty('The candidate file has no rules.')); return; }
  const hasFloor = rules.some((r) => r.floor_true_positives !== undefined || r.floor_false_positives !== undefined);
  const hasLabels = rules.some((r) => r.attack_hits !== undefined);
  const heads = ['Rule', 'Mode', 'Action', { text: 'Hits', attrs: { class: 'num' } }];
  if (hasLabels) heads.push({ text: 'Attack hits', attrs: { class: 'num' } }, { text: 'Benign hits', attrs: { class: 'num' } }, { text: 'Precision', attrs: { class: 'num' } });
  heads.push({ text: 'Entities blocked', attrs: { class: 'num' } });
  if (hasFloor) heads.push({ text: 'Labelled TP', attrs: { class: 'num', title: 'Alerts analysts labelled true positive that this rule still catches' } },
    { text: 'Labelled FP', attrs: { class: 'num', title: 'Alerts analysts labelled false positive that this rule still raises' } });
  result.appendChild(h('div', { class: 'table-wrap' }, table({ id: 'preview-rules', class: 'grid compact' }, heads,
    rules.map((r) => h('tr', { class: r.mode === 'shadow' ? 'shadow' : '' },
      h('td', { class: 'mono', text: r.rule }),
      h('td', null, r.mode === 'shadow' ? h('span', { class: 'tag tag-shadow', text: 'shadow' }) : h('span', { class: 'tag tag-enforce', text: r.mode || 'enforce' })),
      h('td', { class: 'nowrap', text: typeof r.action === 'string' ? actionText(r.action) : JSON.stringify(r.action) }),
      h('td', { class: 'num', text: fmtNum(r.hits) }),
      hasLabels ? [h('td', { class: 'num', text: fmtNum(r.attack_hits) }), h('td', { class: 'num', text: fmtNum(r.benign_hits) }), h('td', { class: 'num', text: r.precision === null || r.precision === undefined ? '–' : fmtPct(r.precision) })] : null,
      h('td', { class: 'num', text: fmtNum(r.entities_blocked) }),
      hasFloor ? [h('td', { class: 'num', text: fmtNum(r.floor_true_positives) }), h('td', { class: `num ${r.floor_false_positives ? 'bad' : ''}`, text: fmtNum(r.floor_false_positives) })] : null)))));
}

function signed(v, sign) {
  if (v === null || v === undefined) return '–';
  return v ? `${sign}${fmtNum(v)}` : '0';
}

/** "ip:1.2.3.4" -> a link to the explorer. */
function chipFor(text) {
  const s = String(text);
  const i = s.indexOf(':');
  if (i > 0) return entityLink(s.slice(0, i), s.slice(i + 1));
  return h('span', { class: 'mono', text: s });
}

/** "block 3600s" -> "block 1h" */
function actionText(a) {
  const m = /^(\w+) (\d+)s$/.exec(String(a));
  return m ? `${m[1]} ${fmtDuration(Number(m[2]))}` : String(a);
}
