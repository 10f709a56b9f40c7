// Draws the Measurement page's charts (ECharts) from the figures the page carries in
// #measure[data-chart]. Every figure is also in the page's tables: without this script,
// nothing is lost but the pictures.
(function () {
  'use strict';
  function draw() {
    var root = document.getElementById('measure');
    if (!root || !window.echarts) return;
    var d = JSON.parse(root.getAttribute('data-chart'));
    var locale = document.documentElement.lang === 'fr' ? 'FR' : 'EN';
    var charts = [];
    var palette = ['#0b5cad', '#c2410c', '#1d6b35', '#7c3aed', '#a4161a', '#0e7490', '#854d0e', '#be185d', '#4f5b6b'];
    function make(id, option) {
      var node = document.getElementById(id);
      if (!node) return;
      var chart = window.echarts.init(node, null, { renderer: 'svg', locale: locale });
      option.color = palette;
      option.animation = false;
      option.tooltip = option.tooltip || { trigger: 'axis' };
      option.grid = { left: 48, right: 48, top: 40, bottom: 48, containLabel: true };
      chart.setOption(option);
      charts.push(chart);
      node.setAttribute('data-drawn', 'true');
    }
    var legend = { type: 'scroll', top: 0 };
    var keys = { type: 'category', data: d.kpis.keys, axisLabel: { interval: 0, rotate: d.kpis.keys.length > 6 ? 30 : 0 } };
    make('chart-kpis', {
      legend: legend,
      xAxis: keys,
      yAxis: [{ type: 'value' }, { type: 'value', minInterval: 1 }],
      series: [
        { name: d.kpis.revenue.name, type: 'bar', data: d.kpis.revenue.values },
        { name: d.kpis.orders.name, type: 'line', yAxisIndex: 1, data: d.kpis.orders.values }
      ]
    });
    make('chart-attribution', {
      legend: legend,
      xAxis: { type: 'category', data: d.attribution.channels, axisLabel: { interval: 0 } },
      yAxis: { type: 'value' },
      series: d.attribution.series.map(function (s) {
        return { name: s.name, type: 'bar', data: s.values };
      })
    });
    make('chart-funnel', {
      tooltip: { trigger: 'item' },
      series: [{ type: 'funnel', sort: 'none', gap: 2, left: '10%', width: '80%', label: { show: true, position: 'inside' }, data: d.funnel }]
    });
    window.addEventListener('resize', function () {
      charts.forEach(function (c) { c.resize(); });
    });
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', draw);
  } else {
    draw();
  }
})();
