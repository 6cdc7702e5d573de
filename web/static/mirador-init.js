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
  var miradorConfig = {
    id: "mirador",
    windows: [windowConfig],
    window: { allowClose: false, allowMaximize: false },
    workspaceControlPanel: { enabled: false }
  };
  var store = window.Mirador.createPluggableStore(miradorConfig);
  store.dispatch = withoutRepeatedSearches(store);
  window.miradorInstance = window.Mirador.viewer(miradorConfig, { store: store });

  /* Mirador 4.0 asks for a default search twice: once from its window saga, once more when the
   * search panel mounts and sees the query. When the second request comes after the first
   * answer (a slow machine), it empties the results under the hits already drawn and the window
   * crashes ("An error occurred": reading 'targetId' of undefined). A request for a page this
   * panel already holds, or is fetching, for the same query is dropped: the answer is the same.
   * Paging (another page's URL) and new queries go through. */
  function withoutRepeatedSearches(target) {
    var dispatch = target.dispatch;
    return function (action) {
      if (action && action.type === "mirador/REQUEST_SEARCH") {
        var state = target.getState();
        var searches = ((state.searches || {})[action.windowId] || {})[action.companionWindowId];
        if (searches && searches.query === action.query && searches.data) {
          var wanted = samePage(action.searchId);
          var held = Object.keys(searches.data).some(function (id) { return samePage(id) === wanted; });
          if (held) {
            return action;
          }
        }
      }
      return dispatch.apply(target, arguments);
    };
  }

  /* The saga writes "?q=red dragon", the panel "?q=red+dragon": the same page of the same search. */
  function samePage(searchId) {
    try {
      var url = new URL(searchId, window.location.href);
      return url.origin + url.pathname + "|" + url.searchParams.get("q") + "|" + url.searchParams.get("page");
    } catch (error) {
      return searchId;
    }
  }
})();
