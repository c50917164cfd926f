/* The console's only script, written for this project (no third-party code). Everything
   works without it; it adds a name typeahead (the ARIA combobox pattern), search as you
   type on the members page, focus on the error summary, and no double submission. */
(function () {
  "use strict";

  function debounce(fn, ms) {
    var t;
    return function () { var args = arguments; clearTimeout(t); t = setTimeout(function () { fn.apply(null, args); }, ms); };
  }

  function typeahead(input) {
    var url = input.getAttribute("data-typeahead");
    var hidden = input.parentNode.querySelector("[data-chosen]");
    var list = document.createElement("ul");
    var listId = input.id + "-listbox";
    var options = [];
    var active = -1;
    var seq = 0;
    list.id = listId;
    list.className = "combobox-list";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    input.parentNode.appendChild(list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", listId);

    function close() {
      list.hidden = true; active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }
    function highlight(i) {
      var items = list.children;
      for (var k = 0; k < items.length; k++) items[k].setAttribute("aria-selected", k === i ? "true" : "false");
      active = i;
      if (i >= 0) { input.setAttribute("aria-activedescendant", items[i].id); items[i].scrollIntoView({ block: "nearest" }); }
    }
    function choose(i) {
      var o = options[i];
      if (!o) return;
      input.value = o.name;
      if (hidden) hidden.value = o.id;
      close();
    }
    function show(found) {
      options = found;
      list.innerHTML = "";
      found.forEach(function (o, i) {
        var li = document.createElement("li");
        li.id = listId + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.textContent = o.name + (o.type === "organisation" ? " (" + (input.getAttribute("data-organisation") || "organisation") + ")" : "");
        if (o.hint) {
          var hint = document.createElement("span");
          hint.className = "hint-inline";
          hint.textContent = " " + o.hint;
          li.appendChild(hint);
        }
        li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      list.hidden = found.length === 0;
      input.setAttribute("aria-expanded", found.length ? "true" : "false");
      active = -1;
    }
    var lookup = debounce(function (q) {
      var mine = ++seq;
      fetch(url + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (found) { if (mine === seq && document.activeElement === input) show(found); })
        .catch(function () {});
    }, 150);
    input.addEventListener("input", function () {
      if (hidden) hidden.value = "";
      var q = input.value.trim();
      if (q.length < 1) { close(); return; }
      lookup(q);
    });
    input.addEventListener("keydown", function (e) {
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); highlight(Math.min(active + 1, options.length - 1)); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if (e.key === "Enter" && active >= 0) { e.preventDefault(); choose(active); }
      else if (e.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { setTimeout(close, 0); });
  }

  function liveSearch(form) {
    var target = document.getElementById(form.getAttribute("data-live-search"));
    var input = form.querySelector("input[type=search]");
    var seq = 0;
    if (!target || !input) return;
    input.addEventListener("input", debounce(function () {
      var mine = ++seq;
      var url = form.action + "?partial=1&q=" + encodeURIComponent(input.value.trim());
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null && mine === seq) target.innerHTML = html; })
        .catch(function () {});
    }, 200));
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-typeahead]"), typeahead);
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-search]"), liveSearch);
    var summary = document.querySelector("[data-error-summary]");
    if (summary) summary.focus();
    Array.prototype.forEach.call(document.querySelectorAll("form"), function (form) {
      form.addEventListener("submit", function (e) {
        var button = form.querySelector("[data-prevent-double-click]");
        if (!button) return;
        if (form.getAttribute("data-sent")) { e.preventDefault(); return; }
        form.setAttribute("data-sent", "1");
      });
    });
  });
})();
