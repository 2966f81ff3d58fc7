// The sacrum picture toggles the "Levels treated" checkboxes; the checkboxes stay the real control.
// Each segment becomes a checkbox of its own (role, aria-checked, a name per level, in the Tab order,
// Space or Enter toggles), so the picture works with the keyboard and a screen reader announces
// its state; it is kept in sync with the checkboxes both ways.
(function () {
  "use strict";
  var svg = document.querySelector(".sacrum-map");
  if (!svg) return;
  var segments = svg.querySelectorAll(".segment");
  function box(level) {
    return document.querySelector('input[name="levels_treated"][value="' + level + '"]');
  }
  function paint() {
    segments.forEach(function (segment) {
      var level = segment.getAttribute("data-level");
      var input = box(level);
      var on = !!(input && input.checked);
      segment.classList.toggle("selected", on);
      segment.setAttribute("aria-checked", on ? "true" : "false");
      var label = svg.querySelector('[data-label="' + level + '"]');
      if (label) label.classList.toggle("selected", on);
    });
  }
  function toggle(segment) {
    var input = box(segment.getAttribute("data-level"));
    if (!input || input.disabled) return;
    input.checked = !input.checked;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }
  svg.setAttribute("role", "group"); // of checkboxes now, no longer a mere picture
  segments.forEach(function (segment) {
    segment.setAttribute("role", "checkbox");
    segment.setAttribute("tabindex", "0");
    segment.setAttribute("aria-label", segment.getAttribute("data-name") || segment.getAttribute("data-level"));
    segment.addEventListener("click", function () { toggle(segment); });
    segment.addEventListener("keydown", function (event) {
      if (event.key === " " || event.key === "Enter") {
        event.preventDefault(); // Space would scroll the page, Enter submit the form
        toggle(segment);
      }
    });
  });
  document.querySelectorAll('input[name="levels_treated"]').forEach(function (input) {
    input.addEventListener("change", paint);
  });
  paint();
})();
