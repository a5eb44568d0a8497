// idstitch web UI: progressive enhancement only; every page works without this file.
// Avatars are third-party URLs rendered as they are: when one fails to load, drop the broken
// image so the initials beneath it show instead.
(function () {
  function drop(img) {
    if (img instanceof HTMLImageElement && img.closest(".avatar")) img.remove();
  }
  document.addEventListener("error", function (event) { drop(event.target); }, true);
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".avatar img").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0) drop(img);
    });
  });
})();
