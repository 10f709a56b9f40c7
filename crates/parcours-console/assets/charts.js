// What the console's charts share: each page carries its figures as JSON in the
// data-chart attribute of a root element; ParcoursCharts.draw(rootId, build) reads them and
// calls build(figures, make), where make(id, option) draws one ECharts chart (SVG, the page's
// language, the console's palette) and marks it data-drawn. Every figure is also in the pages'
// tables: without these scripts, nothing is lost but the pictures.
(function () {
  'use strict';
  var palette = ['#0b5cad', '#c2410c', '#1d6b35', '#7c3aed', '#a4161a', '#0e7490', '#854d0e', '#be185d', '#4f5b6b', '#15803d', '#1e3a8a'];
  function draw(rootId, build) {
    var root = document.getElementById(rootId);
    if (!root || !window.echarts) return;
    var locale = document.documentElement.lang === 'fr' ? 'FR' : 'EN';
    var charts = [];
    function make(id, option) {
      var node = document.getElementById(id);
      if (!node) return;
      var chart = window.echarts.init(node, null, { renderer: 'svg', locale: locale });
      option.color = palette;
      option.animation = false;
      option.tooltip = option.tooltip || { trigger: 'axis' };
      option.grid = option.grid || { left: 48, right: 16, top: 40, bottom: 48, containLabel: true };
      chart.setOption(option);
      charts.push(chart);
      node.setAttribute('data-drawn', 'true');
    }
    build(JSON.parse(root.getAttribute('data-chart')), make);
    window.addEventListener('resize', function () {
      charts.forEach(function (c) { c.resize(); });
    });
  }
  window.ParcoursCharts = {
    draw: function (rootId, build) {
      if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', function () { draw(rootId, build); });
      } else {
        draw(rootId, build);
      }
    }
  };
})();
