// Shared by the data-entry forms: focus the error summary, and "Add" buttons for formset rows.
(function () {
  "use strict";
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  document.querySelectorAll("[data-add-row]").forEach(function (button) {
    var prefix = button.getAttribute("data-add-row");
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    var template = document.getElementById(prefix + "-empty");
    var rows = document.querySelector('[data-formset-rows="' + prefix + '"]');
    if (!total || !template || !rows) return;
    button.hidden = false; // without JS the blank extra rows are enough
    button.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      var html = template.innerHTML.replace(/__prefix__/g, String(index));
      rows.insertAdjacentHTML("beforeend", html);
      total.value = String(index + 1);
      var added = rows.lastElementChild;
      var first = added && added.querySelector("select, input:not([type=hidden]), textarea");
      if (first) first.focus();
      rows.dispatchEvent(new Event("rows-changed", { bubbles: true }));
    });
  });
})();
