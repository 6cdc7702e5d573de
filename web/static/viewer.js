/* Deep-zoom viewer for the canvas page. Reads its settings from the JSON block the server wrote
 * (#viewer-config) and never builds markup from strings: manifest data only reaches the page
 * through textContent and OpenSeadragon options.
 *
 * - the hit's best region (config.overlay) is outlined and zoomed to;
 * - the matches with a rank (the regions the hit's card showed, at most three) are outlined
 *   and labelled; the list below the viewer, the Previous/Next buttons and the n / p keys step
 *   through every match, outlining the current one when it is not drawn already;
 * - #viewer's data-viewport-bounds says what the view shows, in canvas coordinates;
 * - "Select a region" (or r) lets the reader drag a rectangle, which then links to
 *   "more like this region" and "other digitisations of this region";
 * - "Copy link" copies the IIIF Content State link. */
(function () {
  "use strict";

  var copyButton = document.getElementById("copy-share");
  if (copyButton) {
    copyButton.addEventListener("click", function () {
      var field = document.getElementById(copyButton.getAttribute("data-copy"));
      field.select();
      var done = function () { copyButton.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  }

  var configElement = document.getElementById("viewer-config");
  var container = document.getElementById("viewer");
  var status = document.getElementById("viewer-status");
  if (!configElement || !container) {
    return;
  }

  function say(message) {
    if (status) {
      status.textContent = message;
    }
  }

  if (typeof window.OpenSeadragon !== "function") {
    say("The deep-zoom viewer could not be loaded: run `make setup` to install OpenSeadragon.");
    return;
  }

  var OSD = window.OpenSeadragon;
  var config = JSON.parse(configElement.textContent);
  var item = { tileSource: config.tileSource };
  if (config.placement) {
    // Place the image on the canvas in units of the canvas width (see web/canvas_info.py).
    item.x = config.placement.x;
    item.y = config.placement.y;
    item.width = config.placement.width;
  }

  var viewer = OSD({
    element: container,
    prefixUrl: config.prefixUrl,
    tileSources: [item],
    // The canvas drawer shows images from servers that send no CORS headers; WebGL cannot.
    drawer: "canvas",
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    visibilityRatio: 0.5,
    gestureSettingsMouse: { clickToZoom: false }
  });

  say("Loading image…");

  function toRect(region) {
    if (region.units === "viewport") {
      return new OSD.Rect(region.x, region.y, region.width, region.height);
    }
    // No canvas width known: the image's own pixels are the canvas coordinates.
    return viewer.world.getItemAt(0).imageToViewportRectangle(region.x, region.y, region.width, region.height);
  }

  function focusOn(rect, immediately) {
    // A fifth of the region's longer side around it: half of it (the margin this had) left a
    // quarter of the page at the zoom of the whole page, and the view never closed in on it.
    var margin = Math.max(rect.width, rect.height) * 0.2;
    viewer.viewport.fitBoundsWithConstraints(
      new OSD.Rect(rect.x - margin, rect.y - margin, rect.width + 2 * margin, rect.height + 2 * margin), immediately);
  }

  function addBox(rect, className, label, caption) {
    var box = document.createElement("div");
    box.className = className;
    box.setAttribute("aria-hidden", "true");
    if (label) {
      box.title = label;
    }
    if (caption) {
      var text = document.createElement("span");
      text.className = "overlay-label";
      text.textContent = caption;
      box.appendChild(text);
    }
    viewer.addOverlay({ element: box, location: rect });
    return box;
  }

  function canvasScale() {
    // Viewport units are canvas coordinates / canvas width (see web/canvas_info.py).
    return config.canvasWidth || viewer.world.getItemAt(0).getContentSize().x;
  }

  viewer.addHandler("animation-finish", function () {
    var bounds = viewer.viewport.getBounds(true);
    var scale = canvasScale();
    container.setAttribute("data-viewport-bounds", [bounds.x, bounds.y, bounds.width, bounds.height]
      .map(function (value) { return Math.round(value * scale); }).join(","));
  });

  // -- matches: drawn, listed, navigable ------------------------------------------------------
  var highlights = config.highlights || [];
  var highlightRects = [];
  var current = -1;
  var currentBox = null;  // the outline of the current match, when it is not one of the drawn
  var listButtons = Array.prototype.slice.call(document.querySelectorAll("#highlight-list .highlight-item"));

  function select(index) {
    if (!highlightRects.length) {
      return;
    }
    current = (index + highlightRects.length) % highlightRects.length;
    focusOn(highlightRects[current], false);
    if (currentBox) {
      viewer.removeOverlay(currentBox);
      currentBox = null;
    }
    if (!highlights[current].rank) {
      currentBox = addBox(highlightRects[current], "match-overlay match-overlay--current match-overlay--" +
        highlights[current].kind, highlights[current].label);
    }
    listButtons.forEach(function (button, position) {
      button.setAttribute("aria-current", position === current ? "true" : "false");
    });
    say("Match " + (current + 1) + " of " + highlightRects.length + ": " + highlights[current].label);
  }

  listButtons.forEach(function (button) {
    button.addEventListener("click", function () {
      select(parseInt(button.getAttribute("data-index"), 10));
    });
  });
  var previous = document.getElementById("highlight-prev");
  var next = document.getElementById("highlight-next");
  if (previous) {
    previous.addEventListener("click", function () { select(current - 1); });
  }
  if (next) {
    next.addEventListener("click", function () { select(current + 1); });
  }

  // -- drawing a region ------------------------------------------------------------------------
  var drawButton = document.getElementById("draw-region");
  var regionActions = document.getElementById("region-actions");
  var drawing = false;
  var dragStart = null;
  var drawnBox = null;

  function setDrawing(on) {
    drawing = on;
    viewer.setMouseNavEnabled(!on);
    if (drawButton) {
      drawButton.setAttribute("aria-pressed", on ? "true" : "false");
      drawButton.textContent = on ? "Drag on the image…" : "Select a region";
    }
    container.classList.toggle("viewer--drawing", on);
  }

  function canvasRegion(rect) {
    var scale = canvasScale();
    var x = Math.max(0, Math.round(rect.x * scale));
    var y = Math.max(0, Math.round(rect.y * scale));
    return [x, y, Math.max(1, Math.round(rect.width * scale)), Math.max(1, Math.round(rect.height * scale))].join(",");
  }

  function showRegionActions(xywh) {
    if (!regionActions) {
      return;
    }
    document.getElementById("region-similar").href = config.similarUrl + "&xywh=" + xywh;
    document.getElementById("region-duplicates").href = config.duplicatesUrl + "?xywh=" + xywh;
    regionActions.hidden = false;
    say("Region " + xywh + " selected.");
  }

  if (drawButton) {
    drawButton.addEventListener("click", function () { setDrawing(!drawing); });
  }

  new OSD.MouseTracker({
    element: viewer.canvas,
    pressHandler: function (event) {
      if (!drawing) {
        return;
      }
      dragStart = viewer.viewport.pointFromPixel(event.position);
      if (drawnBox) {
        viewer.removeOverlay(drawnBox);
      }
      drawnBox = addBox(new OSD.Rect(dragStart.x, dragStart.y, 0, 0), "drawn-overlay");
    },
    dragHandler: function (event) {
      if (!drawing || !dragStart) {
        return;
      }
      var point = viewer.viewport.pointFromPixel(event.position);
      var rect = new OSD.Rect(Math.min(point.x, dragStart.x), Math.min(point.y, dragStart.y),
        Math.abs(point.x - dragStart.x), Math.abs(point.y - dragStart.y));
      viewer.updateOverlay(drawnBox, rect);
    },
    releaseHandler: function (event) {
      if (!drawing || !dragStart) {
        return;
      }
      var point = viewer.viewport.pointFromPixel(event.position);
      var rect = new OSD.Rect(Math.min(point.x, dragStart.x), Math.min(point.y, dragStart.y),
        Math.abs(point.x - dragStart.x), Math.abs(point.y - dragStart.y));
      dragStart = null;
      setDrawing(false);
      if (rect.width > 0 && rect.height > 0) {
        showRegionActions(canvasRegion(rect));
      }
    }
  });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.altKey || event.ctrlKey || event.metaKey ||
        (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT"))) {
      return;
    }
    if (event.key === "n") {
      select(current + 1);
    } else if (event.key === "p") {
      select(current - 1);
    } else if (event.key === "r") {
      setDrawing(!drawing);
    } else if (event.key === "Escape" && drawing) {
      setDrawing(false);
    }
  });

  viewer.addHandler("open", function () {
    say("");
    var region = config.overlay;
    highlights.forEach(function (highlight) {
      var rect = toRect(highlight);
      highlightRects.push(rect);
      // The hit's own region is the region overlay below; the other drawn ones are labelled boxes.
      if (highlight.rank && !(region && highlight.rank === 1)) {
        addBox(rect, "match-overlay match-overlay--shown match-overlay--" + highlight.kind, highlight.label,
          highlight.caption);
      }
    });
    if (region) {
      var rect = toRect(region);
      var first = highlights.length && highlights[0].rank === 1 ? highlights[0] : null;
      addBox(rect, "region-overlay", first && first.label, first && first.caption);
      // Show the region with some of its surroundings.
      focusOn(rect, false);
      current = 0;
    }
  });

  viewer.addHandler("open-failed", function (event) {
    say("The image could not be loaded from its server" + (event && event.message ? ": " + event.message : "."));
  });
})();
