// Rules: hits per rule over (event) time, enforced and shadow, and the table
// of every loaded rule.

import { h, clear, fmtNum, fmtTime, fmtDuration, table, empty } from './dom.js';
import { api } from './api.js';
import { makeChart, disposeChart } from './charts.js';

let built = false;
let root, chartEl, tableBox, info, topSel;
let last = null;

export function showRules() {
  if (!built) build();
  load();
  return root;
}

function build() {
  built = true;
  chartEl = h('div', { id: 'rule-chart', class: 'chart rule-chart' });
  tableBox = h('div', { class: 'table-wrap' });
  info = h('span', { class: 'muted' });
  topSel = h('select', { id: 'rule-top', title: 'Rules in the chart' },
    [5, 10, 15].map((n) => h('option', { value: String(n), text: `Top ${n} rules`, selected: n === 10 })));
  topSel.addEventListener('change', () => last && drawChart(last));
  root = h('section', { id: 'page-rules', class: 'page' },
    h('div', { class: 'toolbar' }, h('h1', { text: 'Rules' }), info, h('span', { class: 'spacer' }), topSel,
      h('button', { type: 'button', class: 'btn', id: 'rules-refresh', text: 'Refresh', on: { click: load } })),
    h('div', { class: 'panel' }, h('h3', { text: 'Hits per rule over time (event time, KST)' }), chartEl),
    h('div', { class: 'panel' }, h('h3', { text: 'Rules' }), tableBox));
}

async function load() {
  let stats;
  try {
    stats = await api('/v1/rules/stats');
  } catch (e) {
    clear(tableBox).appendChild(h('div', { class: 'error-box', text: e.message }));
    return;
  }
  last = stats;
  const rules = stats.rules || [];
  const shadow = rules.filter((r) => r.mode === 'shadow').length;
  info.textContent = `pack ${stats.version} · ${rules.length} rules${shadow ? ` · ${shadow} in shadow` : ''}`;
  drawChart(stats);
  drawTable(rules);
}

const STEPS_MIN = [1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];


function drawChart(stats) {
  disposeChart(chartEl);
  clear(chartEl);
  const n = Number(topSel.value) || 10;
  const rules = (stats.rules || []).filter((r) => r.hits > 0 && Array.isArray(r.series) && r.series.length)
    .sort((a, b) => b.hits - a.hits).slice(0, n);
  if (!rules.length) {
    chartEl.appendChild(empty('No rule has fired yet.'));
    return;
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of rules) for (const [t] of r.series) { if (t < lo) lo = t; if (t > hi) hi = t; }
  const bucketMin = (stats.bucket_ms || 60000) / 60000;
  const span = (hi - lo) / 60000 + bucketMin;
  const step = STEPS_MIN.find((s) => s >= bucketMin && span / s <= 160) || 1440;
  const stepMs = step * 60000;
  const start = Math.floor(lo / stepMs) * stepMs;
  const count = Math.floor((hi - start) / stepMs) + 1;
  const xs = Array.from({ length: count }, (_, i) => start + i * stepMs);
  const series = rules.map((r) => {
    const data = new Array(count).fill(0);
    for (const [t, c] of r.series) data[Math.floor((t - start) / stepMs)] += c;
    const shadow = r.mode === 'shadow';
    return {
      name: `${r.rule}${shadow ? ' (shadow)' : ''}`,
      type: 'bar', stack: 'hits', data, barCategoryGap: '15%',
      emphasis: { focus: 'series' },
      itemStyle: shadow ? { decal: { symbol: 'rect', dashArrayX: [1, 0], dashArrayY: [2, 4], rotation: -Math.PI / 4, color: 'rgba(255,255,255,0.6)' }, opacity: 0.75 } : undefined,
    };
  });
  makeChart(chartEl, {
    aria: { enabled: true, decal: { show: false } },
    legend: { type: 'scroll', top: 0, left: 0, right: 0, textStyle: { fontSize: 11 }, itemWidth: 12, itemHeight: 10 },
    grid: { left: 8, right: 16, top: 40, bottom: 44, containLabel: true },
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, confine: true, order: 'valueDesc',
      textStyle: { fontSize: 12 } },
    xAxis: { type: 'category', data: xs.map((t) => fmtTime(t).slice(5, 16)), axisLabel: { fontSize: 11, color: '#5b6675', hideOverlap: true },
      axisTick: { alignWithLabel: true }, name: `${step >= 60 ? `${step / 60} h` : `${step} min`} buckets`, nameLocation: 'middle', nameGap: 28, nameTextStyle: { color: '#5b6675', fontSize: 11 } },
    yAxis: { type: 'value', minInterval: 1, axisLabel: { fontSize: 11, color: '#5b6675' }, splitLine: { lineStyle: { color: '#e6e8ec' } } },
    dataZoom: count > 60 ? [{ type: 'inside' }] : undefined,
    series,
    animation: false,
  });
}

function drawTable(rules) {
  const sorted = [...rules].sort((a, b) => b.hits - a.hits || a.rule.localeCompare(b.rule));
  clear(tableBox).appendChild(table({ id: 'rule-stats', class: 'grid compact' },
    ['Rule', 'Detector', 'Mode', 'Action', { text: 'Hits', attrs: { class: 'num' } }, 'Description'],
    sorted.map((r) => {
      const shadow = r.mode === 'shadow';
      return h('tr', { class: shadow ? 'shadow' : '', dataset: { rule: r.rule, mode: r.mode } },
        h('td', { class: 'nowrap' }, h('a', { class: 'mono', href: `#/alerts?rule=${encodeURIComponent(r.rule)}`, title: 'Show this rule\'s alerts', text: r.rule })),
        h('td', { text: r.detector }),
        h('td', null, shadow ? h('span', { class: 'tag tag-shadow', title: 'Shadow: evaluated and counted, never enforced', text: 'shadow' }) : h('span', { class: 'tag tag-enforce', text: 'enforce' })),
        h('td', { class: 'nowrap' }, r.action ? h('span', { class: `act act-${String(r.action).split(' ')[0]}${shadow ? ' act-shadow' : ''}`, title: shadow ? 'would have done' : null, text: shadow ? `would ${actionText(r.action)}` : actionText(r.action) }) : h('span', { class: 'muted', text: '—' })),
        h('td', { class: `num ${r.hits ? '' : 'muted'}`, text: fmtNum(r.hits) }),
        h('td', { class: 'desc', title: r.description || '' }, h('div', { class: 'clamp', text: r.description || '' })));
    })));
}

/** "block 21600s" -> "block 6h" */
function actionText(a) {
  const m = /^(\w+) (\d+)s$/.exec(String(a));
  return m ? `${m[1]} ${fmtDuration(Number(m[2]))}` : String(a);
}
