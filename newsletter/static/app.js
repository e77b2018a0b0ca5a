// Fill the signup form's hidden timezone field from the browser (falls back to UTC
// server-side), and show times the server could only give in UTC in the browser's zone.
document.addEventListener("DOMContentLoaded", function () {
  var tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { tz = ""; }
  document.querySelectorAll("input[name=timezone][data-from-browser]").forEach(function (el) {
    if (!el.value) { el.value = tz; }
  });
  if (!tz) { return; }
  var format;
  try {
    format = new Intl.DateTimeFormat(undefined, {
      month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
      hourCycle: "h23", timeZoneName: "short"
    });
  } catch (e) { return; }
  document.querySelectorAll("time[data-local][datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when.getTime())) { return; }
    el.title = el.textContent;  // the UTC time stays readable on hover
    el.textContent = format.format(when);
    el.setAttribute("data-zone", tz);
  });
});
