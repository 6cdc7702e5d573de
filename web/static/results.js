/* Results pages: on a narrow screen the filters and facets are folded behind a button above the
 * results (style.css hides them once this script marks the page); without the script they stay
 * in the page, after the results. */
(function () {
  "use strict";
  var toggle = document.getElementById("filters-toggle");
  var sidebar = document.getElementById("results-sidebar");
  if (!toggle || !sidebar) {
    return;
  }
  document.documentElement.classList.add("filters-js");
  toggle.hidden = false;
  toggle.addEventListener("click", function () {
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    sidebar.classList.toggle("results-sidebar--open", open);
  });
})();
