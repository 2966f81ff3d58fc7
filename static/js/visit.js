// Follow-up visit form: live ODI score, out-of-window warning, opioid count and MME/day.
// Mirrors outcomes/scoring.py; the values saved are always recomputed on the server.
(function () {
  "use strict";
  var form = document.getElementById("visit-form");
  if (!form) return;
  // The page's sentences, translated by the template (id "visit-strings"): "%(name)s" marks a value, "%%" is a per cent sign.
  var strings = JSON.parse(document.getElementById("visit-strings").textContent);
  function say(key, values) {
    return strings[key].replace(/%\((\w+)\)s|%%/g, function (match, name) { return name ? String(values[name]) : "%"; });
  }

  var odiOut = document.getElementById("odi-score");
  function odi() {
    var sum = 0, answered = 0;
    for (var i = 1; i <= 10; i++) {
      var checked = form.querySelector('input[name="odi_q' + i + '"]:checked');
      if (checked && checked.value !== "") { sum += parseInt(checked.value, 10); answered += 1; }
    }
    var min = parseInt(odiOut.getAttribute("data-min-sections"), 10) || 9;
    if (answered < min || answered === 0) {
      odiOut.textContent = say("odi_unscored", { answered: answered });
      return;
    }
    var score = sum / (5 * answered) * 100;
    // registry/scoring.py odi_band's codes; the page shows their neutral labels (outcomes/odi.py BAND_LABELS).
    var band = score <= 20 ? "minimal" : score <= 40 ? "moderate" : score <= 60 ? "severe" : score <= 80 ? "crippled" : "bed-bound";
    odiOut.textContent = say("odi_scored", { score: score.toFixed(2), band: strings.bands[band] });
  }

  var date = document.getElementById("id_visit_date");
  var warning = document.getElementById("window-warning");
  function windowCheck() {
    if (!date || !warning) return;
    var opens = date.getAttribute("data-window-opens"), closes = date.getAttribute("data-window-closes");
    var outside = opens && date.value && (date.value < opens || date.value > closes);
    warning.hidden = !outside;
    warning.textContent = outside ? say("outside_window", { opens: opens, closes: closes }) : "";
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
      if (!(drug.value in factors)) { unknown.push(say("no_factor", { drug: name })); return; }
      // The CDC factors are for oral doses and fentanyl patches (registry/scoring.py FACTOR_ROUTE).
      var usual = drug.value === "fentanyl_td" ? "transdermal" : "oral";
      if (route && route.value && route.value !== usual) {
        unknown.push(say(usual === "oral" ? "oral_only" : "patch_only", { drug: name, route: route.options[route.selectedIndex].text }));
        return;
      }
      total += factors[drug.value] * (parseFloat(dose && dose.value) || 0);
    });
    countOut.textContent = String(count);
    mmeOut.textContent = unknown.length ? say("mme_unknown", { reasons: unknown.join(strings.separator) }) : total.toFixed(1);
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
