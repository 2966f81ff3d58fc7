/* Dashboard charts. The numbers come from {{ charts|json_script:"dashboard-data" }};
   each chart repeats a table printed beside it, so screen readers lose nothing. */
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof window.Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var labels = data.timepoints.map(function (tp) { return tp.label; });
  var blue = "rgb(13, 110, 253)";
  var grey = "rgb(108, 117, 125)";

  function canvas(id) {
    return document.getElementById(id);
  }

  function course(id, points, yTitle, yMax) {
    var el = canvas(id);
    if (!el) { return; }
    var mean = points.map(function (p) { return p.mean; });
    var low = points.map(function (p) { return p.mean === null || p.sd === null ? null : p.mean - p.sd; });
    var high = points.map(function (p) { return p.mean === null || p.sd === null ? null : p.mean + p.sd; });
    new window.Chart(el, {
      type: "line",
      data: {
        labels: labels,
        datasets: [
          { label: "Mean − SD", data: low, borderColor: "transparent", pointRadius: 0, fill: false },
          { label: "Mean + SD", data: high, borderColor: "transparent", backgroundColor: "rgba(13, 110, 253, 0.15)",
            pointRadius: 0, fill: "-1" },
          { label: "Mean", data: mean, borderColor: blue, backgroundColor: blue, fill: false },
        ],
      },
      options: {
        spanGaps: true,
        scales: { y: { min: 0, max: yMax, title: { display: true, text: yTitle } } },
        plugins: { legend: { labels: { filter: function (item) { return item.text === "Mean"; } } } },
      },
    });
  }

  function spaghetti() {
    var el = canvas("chart-spaghetti");
    if (!el) { return; }
    new window.Chart(el, {
      type: "line",
      data: {
        labels: labels,
        datasets: data.spaghetti.map(function (line) {
          return { label: line.label, data: line.vas, borderColor: "rgba(13, 110, 253, 0.45)",
                   backgroundColor: "rgba(13, 110, 253, 0.45)", pointRadius: 2, borderWidth: 1 };
        }),
      },
      options: {
        spanGaps: true,
        scales: { y: { min: 0, max: 10, title: { display: true, text: "VAS (0-10)" } } },
        plugins: { legend: { display: false } },
      },
    });
  }

  function opioids() {
    var el = canvas("chart-opioids");
    if (!el) { return; }
    new window.Chart(el, {
      type: "bar",
      data: {
        labels: data.opioids.counts.map(String),
        datasets: [
          { label: "Baseline", data: data.opioids.baseline, backgroundColor: grey },
          { label: "Post-procedure", data: data.opioids.post, backgroundColor: blue },
        ],
      },
      options: {
        scales: {
          x: { title: { display: true, text: "Number of opioids" } },
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "Patients" } },
        },
      },
    });
  }

  function leakage() {
    var el = canvas("chart-leakage");
    if (!el) { return; }
    new window.Chart(el, {
      type: "bar",
      data: {
        labels: data.leakage_by_approach.map(function (a) { return a.approach; }),
        datasets: [{ label: "Leakage rate (%)", data: data.leakage_by_approach.map(function (a) { return a.rate; }),
                     backgroundColor: blue }],
      },
      options: { scales: { y: { min: 0, max: 100, title: { display: true, text: "% of patients" } } } },
    });
  }

  course("chart-vas-course", data.course.vas, "VAS (0-10)", 10);
  course("chart-odi-course", data.course.odi, "ODI (%)", 100);
  spaghetti();
  opioids();
  leakage();
})();
