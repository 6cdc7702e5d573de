/* Opens Mirador (from web/node_modules, served under /vendor/mirador/) on the manifest named in
 * #mirador-config; with a query, Mirador's search panel opens and runs it through the
 * manifest's IIIF Content Search service. */
(function () {
  "use strict";
  var configElement = document.getElementById("mirador-config");
  if (!configElement || typeof window.Mirador === "undefined") {
    return;
  }
  var config = JSON.parse(configElement.textContent);
  var windowConfig = { manifestId: config.manifest };
  if (config.query) {
    windowConfig.defaultSearchQuery = config.query;
  }
  window.miradorInstance = window.Mirador.viewer({
    id: "mirador",
    windows: [windowConfig],
    window: { allowClose: false, allowMaximize: false },
    workspaceControlPanel: { enabled: false }
  });
})();
