/* Clover 3 (npm @samvera/clover-iiif) as one browser script, bundled with React by esbuild
 * (`npm run build`, which `make setup` runs): the package's own web-component build cannot show
 * Content Search results (its annotation item calls a variable it shadows: "l is not a function"),
 * so the page mounts the React component itself. window.CloverViewer.mount(element, iiifContent). */
import { createElement } from "react";
import { createRoot } from "react-dom/client";
import Viewer from "@samvera/clover-iiif/viewer";

window.CloverViewer = {
  mount: function (element, iiifContent, options) {
    var root = createRoot(element);
    root.render(createElement(Viewer, { iiifContent: iiifContent, options: options || {} }));
    return root;
  },
};
