// Fill the signup form's hidden timezone field from the browser (falls back to UTC server-side).
document.addEventListener("DOMContentLoaded", function () {
  var tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { tz = ""; }
  document.querySelectorAll("input[name=timezone][data-from-browser]").forEach(function (el) {
    if (!el.value) { el.value = tz; }
  });
});
