// The staff area's scripts: live template preview and check, live delivery progress.
(function () {
  "use strict";

  // --- template editor: re-render the previews and re-check as the text changes -------
  function submitInto(form, url, target) {
    // A form per frame: one form's second submit in the same task would cancel its first.
    var f = document.createElement("form");
    f.method = "post";
    f.action = url;
    f.target = target;
    f.hidden = true;
    ["csrf_token", "subject", "mjml", "text", "variant"].forEach(function (name) {
      var field = form.elements[name];
      if (!field) { return; }
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = field.value;
      f.appendChild(input);
    });
    document.body.appendChild(f);
    f.submit();
    f.remove();
  }

  function list(cls, title, items) {
    var div = document.createElement("div");
    div.className = cls;
    var strong = document.createElement("strong");
    strong.textContent = title;
    div.appendChild(strong);
    var ul = document.createElement("ul");
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = item;
      ul.appendChild(li);
    });
    div.appendChild(ul);
    return div;
  }

  function setupEditor(form) {
    var previewUrl = form.dataset.previewUrl;
    var checkUrl = form.dataset.checkUrl;
    var out = document.getElementById("check");
    var timer = null;

    function refresh() {
      submitInto(form, previewUrl + "?view=html", "preview-desktop");
      submitInto(form, previewUrl + "?view=html", "preview-mobile");
      submitInto(form, previewUrl + "?view=text", "preview-text");
      fetch(checkUrl, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (result) {
          out.replaceChildren();
          if (result.errors.length) { out.appendChild(list("errors", "Errors:", result.errors)); }
          if (result.warnings.length) { out.appendChild(list("warnings", "Warnings:", result.warnings)); }
          if (!result.errors.length && !result.warnings.length) {
            var ok = document.createElement("p");
            ok.className = "ok";
            ok.textContent = "No problems found (" + Math.round(result.html_bytes / 1024) + " KB of HTML).";
            out.appendChild(ok);
          }
          out.dataset.state = result.errors.length ? "errors" : "ok";
        })
        .catch(function () { out.textContent = "Could not check just now."; });
    }

    form.addEventListener("input", function (event) {
      if (event.target.name === "note") { return; }  // changes nothing that is shown
      clearTimeout(timer);
      timer = setTimeout(refresh, 400);
    });
    var button = document.getElementById("preview-button");
    if (button) {
      button.addEventListener("click", function (event) { event.preventDefault(); refresh(); });
    }
  }

  // --- delivery progress: poll the counts while an edition is being sent --------------
  function setupProgress() {
    var bars = Array.prototype.slice.call(document.querySelectorAll("[data-progress]"));
    var holder = document.querySelector("[data-poll]");
    if (!bars.length || !holder) { return; }
    var url = holder.dataset.poll;
    function poll() {
      var ids = bars.map(function (b) { return b.dataset.progress; }).join(",");
      fetch(url + "?ids=" + ids, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          var active = false;
          bars.forEach(function (bar) {
            var p = data[bar.dataset.progress];
            if (!p) { return; }
            bar.querySelector("[data-count=queued]").textContent = p.queued + p.sending;
            ["sent", "failed", "suppressed"].forEach(function (k) {
              bar.querySelector("[data-count=" + k + "]").textContent = p[k];
            });
            var meter = bar.querySelector("progress");
            meter.max = p.total || 1;
            meter.value = p.done;
            bar.querySelector("[data-flag=paused]").hidden = !p.paused;
            bar.dataset.status = p.status;
            var row = bar.closest("tr");
            var status = row && row.querySelector("[data-field=status]");
            if (status) { status.textContent = p.status; }
            if (p.status === "sending") { active = true; }
          });
          setTimeout(poll, active ? 2000 : 10000);
        })
        .catch(function () { setTimeout(poll, 10000); });
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("editor");
    if (form) { setupEditor(form); }
    setupProgress();
  });
})();
