// Draws the dashboard's charts from the figures in #dashboard[data-chart] (see charts.js).
(function () {
  'use strict';
  if (!window.ParcoursCharts) return;
  window.ParcoursCharts.draw('dashboard', function (d, make) {
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
  });
})();
