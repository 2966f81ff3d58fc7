// Completeness page: completed visits (%) per timepoint, one bar series per site (the tables hold the numbers).
// The axis title comes translated from the template (data-axis).
(function () {
  "use strict";
  var canvas = document.getElementById("completeness-chart");
  var source = document.getElementById("completeness-data");
  if (!canvas || !source || typeof window.Chart !== "function") return;
  var data = JSON.parse(source.textContent);
  new window.Chart(canvas, {
    type: "bar",
    data: data,
    options: { animation: false, scales: { y: { min: 0, max: 100, title: { display: true, text: canvas.dataset.axis } } } }
  });
})();
