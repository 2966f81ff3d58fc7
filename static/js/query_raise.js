// Raise-a-query form: the value list follows the chosen record.
(function () {
  "use strict";
  var fields = JSON.parse(document.getElementById("query-fields").textContent);
  var record = document.getElementById("id_record"), field = document.getElementById("id_field");
  function fill() {
    var wanted = field.value || field.dataset.selected;
    field.innerHTML = "";
    (fields[record.value] || []).forEach(function (f) {
      var o = document.createElement("option"); o.value = f[0]; o.textContent = f[1];
      if (f[0] === wanted) { o.selected = true; }
      field.appendChild(o);
    });
  }
  record.addEventListener("change", function () { field.dataset.selected = ""; field.value = ""; fill(); });
  fill();
})();
