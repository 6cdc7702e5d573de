/* Opens Clover 3 (bundled from web/node_modules into /vendor/clover/clover.js) on the IIIF
 * content named in #clover-config: a manifest's URL, or an encoded IIIF Content State (a canvas
 * and region of a manifest). Its Search tab uses the manifest's Content Search 2.0 service. */
(function () {
  "use strict";
  var configElement = document.getElementById("clover-config");
  var element = document.getElementById("clover");
  if (!configElement || !element || typeof window.CloverViewer === "undefined") {
    return;
  }
  var config = JSON.parse(configElement.textContent);
  window.cloverRoot = window.CloverViewer.mount(element, config.content, {
    informationPanel: { open: true, renderContentSearch: true },
    canvasHeight: "60vh"
  });
})();
