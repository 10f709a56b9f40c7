// Draws the Measurement page's charts from the figures in #measure[data-chart] (see
// charts.js).
(function () {
  'use strict';
  if (!window.ParcoursCharts) return;
  window.ParcoursCharts.draw('measure', function (d, make) {
    var legend = { type: 'scroll', top: 0 };
    var grid = { left: 48, right: 48, top: 40, bottom: 48, containLabel: true };
    var keys = { type: 'category', data: d.kpis.keys, axisLabel: { interval: 0, rotate: d.kpis.keys.length > 6 ? 30 : 0 } };
    make('chart-kpis', {
      legend: legend,
      grid: grid,
      xAxis: keys,
      yAxis: [{ type: 'value' }, { type: 'value', minInterval: 1 }],
      series: [
        { name: d.kpis.revenue.name, type: 'bar', data: d.kpis.revenue.values },
        { name: d.kpis.orders.name, type: 'line', yAxisIndex: 1, data: d.kpis.orders.values }
      ]
    });
    make('chart-attribution', {
      legend: legend,
      grid: grid,
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
  });
})();
