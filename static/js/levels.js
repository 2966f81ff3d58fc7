// The sacrum picture toggles the "Levels treated" checkboxes; the checkboxes stay the real control.
(function () {
  "use strict";
  var svg = document.querySelector(".sacrum-map");
  if (!svg) return;
  function box(level) {
    return document.querySelector('input[name="levels_treated"][value="' + level + '"]');
  }
  function paint() {
    svg.querySelectorAll(".segment").forEach(function (segment) {
      var level = segment.getAttribute("data-level");
      var input = box(level);
      var on = !!(input && input.checked);
      segment.classList.toggle("selected", on);
      var label = svg.querySelector('[data-label="' + level + '"]');
      if (label) label.classList.toggle("selected", on);
    });
  }
  svg.querySelectorAll(".segment").forEach(function (segment) {
    segment.addEventListener("click", function () {
      var input = box(segment.getAttribute("data-level"));
      if (!input) return;
      input.checked = !input.checked;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
  });
  document.querySelectorAll('input[name="levels_treated"]').forEach(function (input) {
    input.addEventListener("change", paint);
  });
  paint();
})();
