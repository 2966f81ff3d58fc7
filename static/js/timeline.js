// Patient page: VAS and ODI by visit with the vendored Chart.js (the table holds the same numbers).
(function () {
  "use strict";
  var canvas = document.getElementById("timeline-chart");
  var source = document.getElementById("timeline-data");
  if (!canvas || !source || typeof window.Chart !== "function") return;
  var points = JSON.parse(source.textContent);
  new window.Chart(canvas, {
    type: "line",
    data: {
      labels: points.map(function (p) { return p.label; }),
      datasets: [
        { label: "VAS (0-10)", data: points.map(function (p) { return p.vas; }), yAxisID: "vas", borderColor: "#dc3545", backgroundColor: "#dc3545" },
        { label: "ODI (%)", data: points.map(function (p) { return p.odi; }), yAxisID: "odi", borderColor: "#0d6efd", backgroundColor: "#0d6efd", spanGaps: true }
      ]
    },
    options: {
      animation: false,
      scales: {
        vas: { type: "linear", position: "left", min: 0, max: 10, title: { display: true, text: "VAS" } },
        odi: { type: "linear", position: "right", min: 0, max: 100, title: { display: true, text: "ODI %" }, grid: { drawOnChartArea: false } }
      }
    }
  });
})();
