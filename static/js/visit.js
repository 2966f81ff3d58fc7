// Follow-up visit form: live ODI score, out-of-window warning, opioid count and MME/day.
// Mirrors outcomes/scoring.py; the values saved are always recomputed on the server.
(function () {
  "use strict";
  var form = document.getElementById("visit-form");
  if (!form) return;

  var odiOut = document.getElementById("odi-score");
  function odi() {
    var sum = 0, answered = 0;
    for (var i = 1; i <= 10; i++) {
      var checked = form.querySelector('input[name="odi_q' + i + '"]:checked');
      if (checked && checked.value !== "") { sum += parseInt(checked.value, 10); answered += 1; }
    }
    var min = parseInt(odiOut.getAttribute("data-min-sections"), 10) || 9;
    if (answered < min || answered === 0) {
      odiOut.textContent = "not scored (" + answered + " of 10 sections answered)";
      return;
    }
    var score = sum / (5 * answered) * 100;
    var band = score <= 20 ? "minimal" : score <= 40 ? "moderate" : score <= 60 ? "severe" : score <= 80 ? "crippled" : "bed-bound";
    odiOut.textContent = score.toFixed(2) + " % (" + band + " disability)";
  }

  var date = document.getElementById("id_visit_date");
  var warning = document.getElementById("window-warning");
  function windowCheck() {
    if (!date || !warning) return;
    var opens = date.getAttribute("data-window-opens"), closes = date.getAttribute("data-window-closes");
    var outside = opens && date.value && (date.value < opens || date.value > closes);
    warning.hidden = !outside;
    warning.textContent = outside
      ? "This date is outside the visit window (" + opens + " to " + closes + "): explain the deviation in the note below to save it."
      : "";
  }

  var factors = JSON.parse(document.getElementById("mme-factors").textContent);
  var countOut = document.getElementById("opioid-count"), mmeOut = document.getElementById("mme");
  function opioids() {
    var count = 0, total = 0, unknown = [];
    form.querySelectorAll('[data-formset-rows="med"] [data-row]').forEach(function (row) {
      var drug = row.querySelector('select[name$="-drug"]');
      var dose = row.querySelector('input[name$="-daily_dose"]');
      var route = row.querySelector('select[name$="-route"]');
      var removed = row.querySelector('input[name$="-DELETE"]');
      if (!drug || !drug.value || (removed && removed.checked)) return;
      count += 1;
      var name = drug.options[drug.selectedIndex].text;
      if (!(drug.value in factors)) { unknown.push(name + ": no CDC factor"); return; }
      // The CDC factors are for oral doses and fentanyl patches (registry/scoring.py FACTOR_ROUTE).
      var usual = drug.value === "fentanyl_td" ? "transdermal" : "oral";
      if (route && route.value && route.value !== usual) {
        unknown.push(name + " " + route.options[route.selectedIndex].text.toLowerCase() + ": CDC factors are for " + usual + " doses");
        return;
      }
      total += factors[drug.value] * (parseFloat(dose && dose.value) || 0);
    });
    countOut.textContent = String(count);
    mmeOut.textContent = unknown.length ? "unknown (" + unknown.join("; ") + ")" : total.toFixed(1);
  }

  // Scores and opioids belong to a completed visit only: for any other status they are
  // hidden and disabled (not sent), and come back unchanged if the status is set back.
  var scoreParts = ["div_id_vas", "odi", "med-set", "opioid-summary"]
    .map(function (id) { return document.getElementById(id); })
    .filter(Boolean);
  function statusCheck() {
    var status = form.querySelector('input[name="status"]:checked');
    var completed = !status || status.value === "completed";
    scoreParts.forEach(function (part) {
      part.hidden = !completed;
      part.querySelectorAll("input:not([type=hidden]), select, textarea, button").forEach(function (el) { el.disabled = !completed; });
    });
  }

  form.addEventListener("change", function () { statusCheck(); odi(); windowCheck(); opioids(); });
  form.addEventListener("input", function () { windowCheck(); opioids(); });
  form.addEventListener("rows-changed", opioids);
  statusCheck(); odi(); windowCheck(); opioids();
})();
