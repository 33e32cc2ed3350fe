// ECharts (served by the binary at /console/echarts.min.js, loaded before the
// modules): one place to create, resize and dispose charts.

const charts = new Set();

const BASE = {
  textStyle: { fontFamily: 'system-ui, -apple-system, "Segoe UI", "Malgun Gothic", "Apple SD Gothic Neo", sans-serif', color: '#1c2430' },
  color: ['#2f5d8a', '#c0504d', '#6a994e', '#8064a2', '#3a9bb5', '#d08c2b', '#6b7280', '#5b8fd1', '#a44a7f', '#264478', '#9aa4b1'],
};

/** Draw `option` in `el` (a sized element); returns the chart, or null without ECharts. */
export function makeChart(el, option) {
  const ec = globalThis.echarts;
  if (!ec) {
    el.textContent = 'Charts unavailable: /console/echarts.min.js did not load.';
    el.classList.add('empty');
    return null;
  }
  const existing = ec.getInstanceByDom(el);
  if (existing) { existing.dispose(); charts.delete(existing); }
  const chart = ec.init(el, null, { renderer: 'canvas' });
  chart.setOption({ ...BASE, ...option });
  charts.add(chart);
  // Sized by CSS: if it was hidden when drawn, size it once it shows.
  requestAnimationFrame(() => { if (!chart.isDisposed()) chart.resize(); });
  return chart;
}

/** Dispose the charts inside `root` (or drawn in it). */
export function disposeChart(root) {
  for (const c of [...charts]) {
    const dom = c.isDisposed() ? null : c.getDom();
    if (!dom || root === dom || root.contains(dom)) {
      if (!c.isDisposed()) c.dispose();
      charts.delete(c);
    }
  }
}

export function resizeCharts() {
  for (const c of charts) if (!c.isDisposed()) c.resize();
}

let t = 0;
window.addEventListener('resize', () => { clearTimeout(t); t = setTimeout(resizeCharts, 100); });
