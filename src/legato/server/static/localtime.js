// Times are served in UTC (<time datetime="...Z">); here they are shown in the reader's own
// time zone, with UTC kept in the title (hover). Run again after each htmx swap.
(function () {
  function pad(n) { return String(n).padStart(2, "0"); }
  function local(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
      el.setAttribute("data-local", "1");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { local(document); });
  document.addEventListener("htmx:afterSettle", function (e) { local(e.target || document); });
})();
