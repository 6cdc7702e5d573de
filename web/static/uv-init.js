/* Opens Universal Viewer 4 (from web/node_modules, served under /vendor/universalviewer/) on the
 * manifest named in #uv-config. Its search box (in the footer) uses the manifest's IIIF Content
 * Search 1.0 service. */
(function () {
  "use strict";
  var configElement = document.getElementById("uv-config");
  if (!configElement || typeof window.UV === "undefined") {
    return;
  }
  var config = JSON.parse(configElement.textContent);
  window.uvInstance = window.UV.init("uv", { manifest: config.manifest, embedded: true });
})();
