// The patient's page: one section per screen with progress, answers kept in sessionStorage
// (nothing lost when the phone locks or the tab reloads). Without JavaScript it is one long form.
(function () {
  "use strict";
  var key = "selfreport:" + location.pathname;
  if (document.querySelector("[data-sr-clear]")) {
    Object.keys(sessionStorage).forEach(function (k) { if (k.indexOf("selfreport:") === 0) sessionStorage.removeItem(k); });
    return;
  }
  var form = document.getElementById("selfreport");
  if (!form) return;
  var steps = Array.prototype.slice.call(form.querySelectorAll(".sr-step"));
  var saved = {};
  try { saved = JSON.parse(sessionStorage.getItem(key) || "{}"); } catch (e) { saved = {}; }
  var hasErrors = !!document.getElementById("errors");
  if (!hasErrors) {
    Object.keys(saved.values || {}).forEach(function (name) {
      var value = saved.values[name];
      form.querySelectorAll('[name="' + name + '"]').forEach(function (el) {
        if (el.type === "radio") el.checked = el.value === value;
        else el.value = value;
      });
    });
  }
  function store() {
    var values = {};
    new FormData(form).forEach(function (v, k) { if (k !== "csrfmiddlewaretoken") values[k] = v; });
    form.querySelectorAll('input[type="radio"]').forEach(function (el) {
      if (!(el.name in values)) values[el.name] = "";
    });
    sessionStorage.setItem(key, JSON.stringify({ values: values, step: current }));
  }
  var current = hasErrors ? 0 : Math.min(saved.step || 0, steps.length - 1);
  var nav = document.getElementById("sr-nav"), back = document.getElementById("sr-back"), next = document.getElementById("sr-next");
  var progress = document.getElementById("sr-progress"), bar = document.getElementById("sr-bar"), label = document.getElementById("sr-step-label");
  form.classList.add("js-steps");
  nav.hidden = false; progress.hidden = false;
  function show(i) {
    current = i;
    steps.forEach(function (s, j) { s.hidden = j !== i; });
    back.disabled = i === 0;
    next.hidden = i === steps.length - 1;
    var pct = Math.round(((i + 1) / steps.length) * 100);
    bar.style.width = pct + "%";
    progress.querySelector(".progress").setAttribute("aria-valuenow", pct);
    label.textContent = label.dataset.template.replace("%(n)s", i + 1).replace("%(total)s", steps.length);
    store();
    var heading = steps[i].querySelector("h2, legend");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
    window.scrollTo(0, 0);
  }
  next.addEventListener("click", function () {
    var vas = form.querySelector('[name="vas"]');
    if (current === 0 && vas && !vas.checkValidity()) { vas.reportValidity(); return; }
    show(Math.min(current + 1, steps.length - 1));
  });
  back.addEventListener("click", function () { show(Math.max(current - 1, 0)); });
  form.addEventListener("input", store);
  form.addEventListener("change", store);
  show(current);
})();
