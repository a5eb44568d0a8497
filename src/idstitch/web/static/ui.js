// idstitch web UI: progressive enhancement only; every page works without this file.
// Avatars are third-party URLs rendered as they are: when one fails to load, drop the broken
// image so the initials beneath it show instead.
(function () {
  function drop(img) {
    if (img instanceof HTMLImageElement && img.closest(".avatar")) img.remove();
  }
  document.addEventListener("error", function (event) { drop(event.target); }, true);
  // A form whose answer takes a moment (charts, counts): say it is coming, and keep it from
  // being sent twice. `data-loading` names the element the answer replaces.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.loading) return;
    var target = document.getElementById(form.dataset.loading);
    if (target) {
      target.setAttribute("aria-busy", "true");
      target.classList.add("loading");
    }
    var button = event.submitter;
    if (button instanceof HTMLButtonElement) {
      button.dataset.label = button.textContent;
      button.textContent = "Loading…";
      button.setAttribute("aria-disabled", "true");
    }
  });
  // Back to a page kept from before its form was sent: the answer is not on its way any more.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll(".loading").forEach(function (el) {
      el.classList.remove("loading");
      el.removeAttribute("aria-busy");
    });
    document.querySelectorAll("button[data-label]").forEach(function (button) {
      button.textContent = button.dataset.label;
      button.removeAttribute("aria-disabled");
      delete button.dataset.label;
    });
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".avatar img").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0) drop(img);
    });
  });
})();
