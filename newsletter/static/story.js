// Charge the read only when the page is really shown to a person: a link scanner fetches
// the page but never runs this, and a tab opened in the background waits until it is seen.
(function () {
  var article = document.querySelector("article[data-view-token]");
  if (!article) { return; }
  var sent = false;
  function confirmRead() {
    if (sent || document.visibilityState !== "visible") { return; }
    sent = true;
    fetch(article.getAttribute("data-confirm-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: article.getAttribute("data-view-token") })
    }).then(function (response) { return response.json(); }).then(function (data) {
      var meter = document.getElementById("meter");
      if (meter && typeof data.free_left === "number") {
        meter.textContent = meter.textContent.replace(/^\d+/, String(data.free_left));
      }
      article.setAttribute("data-read", data.charged ? "charged" : "free");
    }).catch(function () { sent = false; });
  }
  document.addEventListener("visibilitychange", confirmRead);
  confirmRead();
})();
