// Draws the dashboard's charts (ECharts) from the figures the page carries in
// #dashboard[data-chart]. Every figure is also in the page's tables: without this script,
// nothing is lost but the pictures.
(function () {
  'use strict';
  function draw() {
    var root = document.getElementById('dashboard');
    if (!root || !window.echarts) return;
    var d = JSON.parse(root.getAttribute('data-chart'));
    var locale = document.documentElement.lang === 'fr' ? 'FR' : 'EN';
    var charts = [];
    var palette = ['#0b5cad', '#c2410c', '#1d6b35', '#7c3aed', '#a4161a', '#0e7490', '#854d0e', '#be185d', '#4f5b6b', '#15803d', '#1e3a8a'];
    function make(id, option) {
      var node = document.getElementById(id);
      if (!node) return;
      var chart = window.echarts.init(node, null, { renderer: 'svg', locale: locale });
      option.color = palette;
      option.animation = false;
      option.tooltip = option.tooltip || { trigger: 'axis' };
      option.grid = { left: 48, right: 16, top: 40, bottom: 48, containLabel: true };
      chart.setOption(option);
      charts.push(chart);
      node.setAttribute('data-drawn', 'true');
    }
    function lines(list, kind, stack) {
      return list.map(function (s) {
        return { name: s.name, type: kind, stack: stack, data: s.values, emphasis: { focus: 'series' } };
      });
    }
    var days = { type: 'category', data: d.days };
    var counts = { type: 'value', minInterval: 1 };
    var legend = { type: 'scroll', top: 0 };
    make('chart-events', { legend: legend, xAxis: days, yAxis: counts, series: lines(d.events, 'bar', 'events') });
    make('chart-profiles', { legend: legend, xAxis: days, yAxis: counts, series: lines(d.profiles, 'line') });
    make('chart-audiences', { legend: legend, xAxis: days, yAxis: counts, series: lines(d.audiences, 'bar', 'changes') });
    make('chart-journeys', {
      legend: legend,
      xAxis: { type: 'category', data: d.journeys.names, axisLabel: { interval: 0, rotate: d.journeys.names.length > 4 ? 30 : 0 } },
      yAxis: counts,
      series: lines(d.journeys.series, 'bar')
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
