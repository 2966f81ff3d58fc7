/* Dashboard charts. The numbers come from {{ charts|json_script:"dashboard-data" }};
   each chart repeats a table printed beside it, so screen readers lose nothing. */
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof window.Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  // Translated words of the charts, from the template (json_script), so there is no JS catalogue.
  var words = JSON.parse(document.getElementById("dashboard-text").textContent);
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
          { label: words.mean_minus_sd, data: low, borderColor: "transparent", pointRadius: 0, fill: false },
          { label: words.mean_plus_sd, data: high, borderColor: "transparent", backgroundColor: "rgba(13, 110, 253, 0.15)",
            pointRadius: 0, fill: "-1" },
          { label: words.mean, data: mean, borderColor: blue, backgroundColor: blue, fill: false },
        ],
      },
      options: {
        spanGaps: true,
        scales: { y: { min: 0, max: yMax, title: { display: true, text: yTitle } } },
        plugins: { legend: { labels: { filter: function (item) { return item.text === words.mean; } } } },
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
        scales: { y: { min: 0, max: 10, title: { display: true, text: words.vas_axis } } },
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
          { label: words.baseline, data: data.opioids.baseline, backgroundColor: grey },
          { label: words.post, data: data.opioids.post, backgroundColor: blue },
        ],
      },
      options: {
        scales: {
          x: { title: { display: true, text: words.opioid_count } },
          y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: words.patients } },
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
        datasets: [{ label: words.leakage_rate, data: data.leakage_by_approach.map(function (a) { return a.rate; }),
                     backgroundColor: blue }],
      },
      options: { scales: { y: { min: 0, max: 100, title: { display: true, text: words.percent_patients } } } },
    });
  }

  function survival() {
    var el = canvas("chart-survival");
    var km = data.survival;
    if (!el || !km) { return; }
    var text = el.dataset;
    var last = km.steps[km.steps.length - 1];
    // Steps from (0, 1); the last estimate is carried to the last follow-up day.
    function line(key) {
      var points = km.steps.map(function (s) { return { x: s.days, y: s[key] }; });
      if (km.last_day > last.days) { points.push({ x: km.last_day, y: last[key] }); }
      return points;
    }
    var ticks = km.ticks.map(function (t) { return t.days; });
    var atRisk = {};
    km.ticks.forEach(function (t) { atRisk[t.days] = t.at_risk; });
    var maxDay = ticks.length ? ticks[ticks.length - 1] : 0;
    function fixedTicks(axis) { axis.ticks = ticks.map(function (d) { return { value: d }; }); }
    new window.Chart(el, {
      type: "line",
      data: {
        datasets: [
          { label: text.labelCi, data: line("low"), stepped: true, borderColor: "transparent", pointRadius: 0,
            fill: false },
          { label: text.labelCi, data: line("high"), stepped: true, borderColor: "transparent",
            backgroundColor: "rgba(13, 110, 253, 0.15)", pointRadius: 0, fill: "-1" },
          { label: text.labelSurvival, data: line("survival"), stepped: true, borderColor: blue,
            backgroundColor: blue, pointRadius: 0, borderWidth: 2, fill: false },
          { type: "scatter", label: text.labelCensored,
            data: km.censored.map(function (c) { return { x: c.days, y: c.survival }; }),
            pointStyle: "line", rotation: 90, radius: 6, borderColor: grey, borderWidth: 1.5, showLine: false },
        ],
      },
      options: {
        parsing: true,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { type: "linear", min: 0, max: maxDay, afterBuildTicks: fixedTicks,
               title: { display: true, text: text.labelDays } },
          atRisk: { type: "linear", axis: "x", position: "bottom", min: 0, max: maxDay, afterBuildTicks: fixedTicks,
                    grid: { display: false, drawTicks: false }, border: { display: false },
                    ticks: { callback: function (value) { return atRisk[value] === undefined ? "" : atRisk[value]; } },
                    title: { display: true, text: text.labelAtRisk } },
          y: { min: 0, max: 1, title: { display: true, text: text.labelProportion } },
        },
        plugins: {
          legend: { labels: { filter: function (item) { return item.datasetIndex !== 0; } } },
        },
      },
    });
  }

  course("chart-vas-course", data.course.vas, words.vas_axis, 10);
  course("chart-odi-course", data.course.odi, words.odi_axis, 100);
  spaghetti();
  opioids();
  leakage();
  survival();
})();
