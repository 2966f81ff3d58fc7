// Shows major/minor as derived for the study's named complication types (the server derives it too).
(function () {
  "use strict";
  var data = document.getElementById("severity-by-type");
  if (!data) return;
  var derived = JSON.parse(data.textContent);
  function sync(typeSelect) {
    var row = typeSelect.closest("[data-row]");
    var severity = row && row.querySelector("select[data-severity]");
    if (!severity) return;
    var value = derived[typeSelect.value];
    if (value) severity.value = value;
    // A derived value is shown but not chosen: the select only matters for CSF leak and other.
    severity.setAttribute("aria-readonly", value ? "true" : "false");
    severity.classList.toggle("bg-light", !!value);
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-complication-type]")) sync(event.target);
    if (event.target.matches("select[data-severity]")) {
      var type = event.target.closest("[data-row]").querySelector("select[data-complication-type]");
      if (type && derived[type.value]) event.target.value = derived[type.value];
    }
  });
  document.querySelectorAll("select[data-complication-type]").forEach(sync);
})();
