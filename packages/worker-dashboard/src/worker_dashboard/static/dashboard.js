// worker-dashboard: close the live stream while the tab is hidden, reopen it when the tab is shown again.
(function () {
  "use strict";
  function live() { return document.getElementById("live"); }
  var paused = false;
  document.addEventListener("visibilitychange", function () {
    var elt = live();
    if (!elt || !window.htmx) { return; }
    if (document.visibilityState === "hidden" && !paused) {
      paused = true;
      htmx.trigger(elt, "htmx:beforeCleanupElement"); // the SSE extension closes its EventSource
      elt.setAttribute("data-live", "paused");
    } else if (document.visibilityState === "visible" && paused) {
      paused = false;
      var fresh = elt.cloneNode(true); // a new element: htmx opens a new EventSource for it
      fresh.setAttribute("data-live", "on");
      elt.replaceWith(fresh);
      htmx.process(fresh);
    }
  });
  document.addEventListener("htmx:sseOpen", function () {
    var elt = live();
    if (elt) { elt.setAttribute("data-live", "on"); }
  });
})();
