// The report page's own script (not vendored): draws the charts from the report's JSON with the
// embedded ECharts. SVG rendering, so the charts print sharp and the drawn page can be inspected;
// no animation, so what is on screen, on paper and in a headless screenshot is the final chart.
(function () {
  'use strict';
  var report = JSON.parse(document.getElementById('report-data').textContent);
  var FONT = '"Noto Sans KR", "Noto Sans CJK KR", "Apple SD Gothic Neo", "Malgun Gothic", system-ui, sans-serif';
  var ACCENT = '#1f4e9c';
  var LIGHT = '#8fb0e3';
  var PREVIOUS = '#a3acbb';
  // Slices or bars past this many are summed into one, so a long tail stays readable; the tables
  // below the charts list every name.
  var MAX_PIE = 7;
  var MAX_BARS = 12;
  var charts = [];

  function pct(v) { return v == null ? '–' : (v * 100).toFixed(1) + '%'; }
  function num(v) { return v == null ? '–' : Math.round(v).toLocaleString('en-US'); }
  function ms(v) { return v == null ? '–' : num(v) + ' ms'; }

  function draw(id, option, empty) {
    var el = document.getElementById(id);
    var chart = echarts.init(el, null, { renderer: 'svg' });
    option.animation = false;
    option.textStyle = { fontFamily: FONT };
    if (empty) {
      option.graphic = [{ type: 'text', left: 'center', top: 'middle', style: { text: '이 기간에 없음 · None in this period', fill: '#8a93a3', fontSize: 14, fontFamily: FONT } }];
    }
    chart.setOption(option);
    charts.push(chart);
  }

  // The first `max - 1` entries, and the rest summed as one.
  function head(entries, max, value) {
    if (entries.length <= max) { return entries.map(function (e) { return { name: e.name, value: value(e) }; }); }
    var shown = entries.slice(0, max - 1).map(function (e) { return { name: e.name, value: value(e) }; });
    var rest = entries.slice(max - 1).reduce(function (sum, e) { return sum + value(e); }, 0);
    shown.push({ name: '기타 other (' + (entries.length - max + 1) + ')', value: rest });
    return shown;
  }

  function horizontal(names) {
    return {
      type: 'category', data: names, inverse: true,
      axisLabel: { interval: 0, color: '#1d2330' }, axisTick: { show: false }
    };
  }

  // Current vs previous: one small panel per headline figure, each with its own scale, since the
  // figures are counts, rates and times that share no axis.
  (function () {
    var figures = {
      events: { label: '처리 건수\nEvents', rate: false, unit: '' },
      success_rate: { label: '인증 성공률\nSuccess rate', rate: true },
      mean_duration_ms: { label: '평균 처리 시간\nMean time', rate: false, unit: ' ms' },
      alerts: { label: '경보\nAlerts', rate: false, unit: '' },
      blocks: { label: '차단 설정\nBlocks set', rate: false, unit: '' },
      block_rate: { label: '차단율\nBlock rate', rate: true }
    };
    var n = report.comparison.length;
    var option = {
      legend: { top: 0, data: ['이전 기간 Previous', '이번 기간 Current'] },
      tooltip: { trigger: 'item' },
      grid: [], xAxis: [], yAxis: [], series: []
    };
    report.comparison.forEach(function (c, i) {
      var f = figures[c.figure];
      var scale = f.rate ? 100 : 1;
      var fmt = function (v) { return f.rate ? v.toFixed(1) + '%' : num(v) + f.unit; };
      var width = 100 / n;
      option.grid.push({ left: (i * width + width * 0.28) + '%', width: (width * 0.62) + '%', top: 42, bottom: 48 });
      option.xAxis.push({ gridIndex: i, type: 'category', data: [f.label], axisTick: { show: false }, axisLabel: { interval: 0, lineHeight: 15, color: '#1d2330' } });
      option.yAxis.push({ gridIndex: i, type: 'value', splitNumber: 3, max: f.rate ? 100 : null, interval: f.rate ? 25 : null, axisLabel: { formatter: function (v) { return f.rate ? v + '%' : num(v); }, fontSize: 10 } });
      [['이전 기간 Previous', c.previous, PREVIOUS], ['이번 기간 Current', c.current, ACCENT]].forEach(function (s) {
        option.series.push({
          name: s[0], type: 'bar', xAxisIndex: i, yAxisIndex: i, barGap: '15%', itemStyle: { color: s[2] },
          data: [s[1] == null ? '-' : s[1] * scale],
          label: { show: true, position: 'top', fontSize: 10, formatter: function (p) { return fmt(p.value); } }
        });
      });
    });
    draw('chart-comparison', option, n === 0);
  })();

  (function () {
    var steps = report.steps;
    draw('chart-success-by-step', {
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      grid: { left: 8, right: 96, top: 12, bottom: 24, containLabel: true },
      xAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value}%' } },
      yAxis: horizontal(steps.map(function (s) { return s.name; })),
      series: [{
        name: '성공률 Success rate', type: 'bar', itemStyle: { color: ACCENT },
        data: steps.map(function (s) { return s.rate == null ? '-' : +(s.rate * 100).toFixed(2); }),
        label: {
          show: true, position: 'right',
          formatter: function (p) { var s = steps[p.dataIndex]; return pct(s.rate) + ' (' + num(s.successes) + '/' + num(s.attempts) + ')'; }
        }
      }]
    }, steps.length === 0);
  })();

  (function () {
    var steps = report.steps.filter(function (s) { return s.duration; });
    var series = function (name, key, color) {
      return {
        name: name, type: 'bar', itemStyle: { color: color },
        data: steps.map(function (s) { return s.duration[key]; }),
        label: { show: true, position: 'right', fontSize: 10, formatter: function (p) { return ms(p.value); } }
      };
    };
    draw('chart-duration-by-step', {
      legend: { top: 0 },
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      grid: { left: 8, right: 72, top: 30, bottom: 24, containLabel: true },
      xAxis: { type: 'value', axisLabel: { formatter: function (v) { return num(v) + ' ms'; } } },
      yAxis: horizontal(steps.map(function (s) { return s.name; })),
      series: [series('p50 (중앙값 median)', 'p50_ms', LIGHT), series('p95', 'p95_ms', ACCENT)]
    }, steps.length === 0);
  })();

  (function () {
    var reasons = report.failure_reasons;
    draw('chart-failure-reasons', {
      tooltip: { trigger: 'item', formatter: function (p) { return p.name + ': ' + num(p.value) + ' (' + p.percent + '%)'; } },
      series: [{
        name: '실패 사유 Failure reasons', type: 'pie', radius: ['38%', '66%'], center: ['50%', '52%'],
        avoidLabelOverlap: true,
        label: { formatter: function (p) { return p.name + '\n' + num(p.value) + ' · ' + p.percent.toFixed(1) + '%'; } },
        data: head(reasons, MAX_PIE, function (r) { return r.count; })
      }]
    }, reasons.length === 0);
  })();

  (function () {
    var rules = head(report.anomalies.alerts_by_rule, MAX_BARS, function (r) { return r.count; });
    draw('chart-alerts-by-rule', {
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
      grid: { left: 8, right: 48, top: 12, bottom: 24, containLabel: true },
      xAxis: { type: 'value', minInterval: 1 },
      yAxis: horizontal(rules.map(function (r) { return r.name; })),
      series: [{
        name: '경보 Alerts', type: 'bar', itemStyle: { color: '#c2410c' },
        data: rules.map(function (r) { return r.value; }),
        label: { show: true, position: 'right', formatter: function (p) { return num(p.value); } }
      }]
    }, rules.length === 0);
  })();

  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
})();
