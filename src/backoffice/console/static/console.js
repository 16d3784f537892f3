// Progressive enhancement only: every page works without this file.
// An element with data-refresh="<url>" is replaced by the same element fetched from <url>
// every data-interval milliseconds (default 2000), until the fetched one no longer asks
// to be refreshed (a job that finished). Used for a running job's progress.
(function () {
  "use strict";
  function refresh(element) {
    var url = element.getAttribute("data-refresh");
    var interval = parseInt(element.getAttribute("data-interval") || "2000", 10);
    window.setTimeout(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
        .then(function (html) {
          var holder = new DOMParser().parseFromString(html, "text/html");
          var fresh = holder.querySelector("[data-fragment='" + element.getAttribute("data-fragment") + "']");
          if (!fresh) { return; }
          element.replaceWith(fresh);
          if (fresh.hasAttribute("data-refresh")) { refresh(fresh); }
        })
        .catch(function () { window.setTimeout(function () { refresh(element); }, interval * 2); });
    }, interval);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var elements = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < elements.length; i++) { refresh(elements[i]); }
  });
})();
