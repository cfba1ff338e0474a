// The console's one script (progressive enhancement: every page works without it, it only keeps
// pages current and saves clicks). Values are only ever written with textContent, attributes and
// progress values, never as HTML, except fragments our own server rendered (autoescaped) for
// [data-refresh]. The CSP allows scripts from our origin only, so nothing inline runs anyway.
//
// Conventions (this comment is their reference; docs/console.md describes the live feed behind them):
//   <table data-live="/console/executions/stream?run_id=…">   rows <tr data-row="<execution id>">
//     (each row gets data-state="<state>" from its events: CSS may show or hide actions by it)
//     [data-field=name]  text of row[name] (<progress data-field=percent> gets its value)
//     [data-format=time]  a time shown to the second, "YYYY-MM-DD HH:MM:SS" (as the server renders it)
//     [data-value=name]  an input's or button's value set to row[name] (a cloned row's checkbox)
//     [data-label="Select {machine}"]  aria-label filled from the row, as data-href is
//     [data-transfer=bytes|rate|eta]  the latest ChunkSent of that execution (text), and
//     <progress data-transfer-bar>  its bytes done of the total
//     <template data-row-template>  cloned for an execution the page did not have (new rows first),
//       only when it matches the table's data-match="state=failed&scenario=x" (each key equal to
//       row[key]) and, with data-since="<time>", was queued at or after that time
//     [data-href="/console/machines/{machine_id}"]  links filled from the row
//     [data-live-empty]  (anywhere on the page) hidden once a pushed row was added
//   [data-live-status]  "Live", "Reconnecting…", "Finished" (a stream refused with an HTTP error is
//     opened again with a backoff, up to 8 times in a row; one the server ended stays ended)
//   [data-refresh="<fragment url>"][data-refresh-on="<stream url>"]  its content replaced by the
//     fragment (text/html from our origin) on the stream's events: one fetch at a time, debounced,
//     never two answers applied out of order. Across a replacement it keeps the checkboxes checked
//     (input[type=checkbox][name] matched by name and value), keyboard focus (the same id, the same
//     name and value, or the same link), and binds what is inside anew (data-select-all, data-shows).
//     While a text field, textarea or select inside it has focus (the operator is typing), nothing
//     is replaced: the refresh waits until focus leaves it. A 401 (the session ended) changes nothing.
//   <input type=checkbox data-select-all="machine">  checks every input[name=machine] on the page;
//     it is shown checked when every one is, half-checked (indeterminate) when some are
//   <select data-shows="kind">  of the elements [data-for-kind="<value>"], only the chosen value's
//     are shown (the scenario form's per-kind parameters; without script all are shown)
"use strict";

(function () {
  const sources = new Map();

  // A browser's EventSource reconnects by itself after a dropped connection, but gives up for good
  // on an HTTP error (a 503 while the api is busy or restarting): we open it again, 1 s, 2 s, 4 s ...
  // up to 30 s apart, at most RETRIES times in a row. A stream the server ended ("end") stays ended.
  const RETRIES = 8;

  function connect(url, entry) {
    const es = new EventSource(url);
    entry.es = es;
    for (const kind of ["execution", "transfer", "end"]) {
      es.addEventListener(kind, (ev) => {
        let data = {};
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        if (kind === "end") { entry.ended = true; es.close(); }
        for (const fn of entry.listeners) fn(kind, data);
      });
    }
    es.addEventListener("open", () => { entry.failures = 0; status(url, "Live"); });
    es.addEventListener("error", () => {
      if (es.readyState !== 2) { status(url, "Reconnecting…"); return; }
      if (entry.ended || entry.failures >= RETRIES) { status(url, "Finished"); return; }
      status(url, "Reconnecting…");
      const delay = Math.min(30000, 1000 * 2 ** entry.failures);
      entry.failures += 1;
      setTimeout(() => connect(url, entry), delay);
    });
  }

  function source(url) {
    if (!sources.has(url)) {
      const entry = { es: null, listeners: [], failures: 0, ended: false };
      sources.set(url, entry);
      connect(url, entry);
    }
    return sources.get(url);
  }

  function status(url, text) {
    for (const el of document.querySelectorAll("[data-live-status]")) {
      const of = el.getAttribute("data-live-status");
      if (!of || of === url) el.textContent = text;
    }
  }

  function fromRow(pattern, data, encode) {
    return pattern.replace(/\{(\w+)\}/g, (_, k) => encode(data[k] == null ? "" : String(data[k])));
  }

  function fill(row, data) {
    row.setAttribute("data-state", data.state || "");
    for (const el of row.querySelectorAll("[data-value]")) {
      const value = data[el.getAttribute("data-value")];
      if (value != null) el.value = String(value);
    }
    for (const el of row.querySelectorAll("[data-label]")) {
      el.setAttribute("aria-label", fromRow(el.getAttribute("data-label"), data, (v) => v));
    }
    for (const el of row.querySelectorAll("[data-field]")) {
      const value = data[el.getAttribute("data-field")];
      if (value === undefined) continue;
      if (el.tagName === "PROGRESS") el.value = Number(value) || 0;
      else if (el.getAttribute("data-format") === "time") el.textContent = value === null ? "" : String(value).slice(0, 19);
      else el.textContent = value === null ? "" : String(value);
    }
    for (const el of row.querySelectorAll("[data-href]")) {
      const href = fromRow(el.getAttribute("data-href"), data, encodeURIComponent);
      if (href.startsWith("/")) el.setAttribute("href", href);
    }
  }

  function human(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = Number(bytes) || 0, i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function time(text) {
    return Date.parse(String(text || "").replace(" ", "T"));
  }

  function wanted(table, data) {
    const match = new URLSearchParams(table.getAttribute("data-match") || "");
    for (const [key, value] of match) if (String(data[key] ?? "") !== value) return false;
    const since = table.getAttribute("data-since");
    return !since || time(data.queued_at) >= time(since);
  }

  function liveTable(table) {
    const url = table.getAttribute("data-live");
    const body = table.tBodies[0] || table.createTBody();
    const template = table.querySelector("template[data-row-template]");
    source(url).listeners.push((kind, data) => {
      if (kind === "execution") {
        let row = body.querySelector(`tr[data-row="${CSS.escape(data.execution_id || "")}"]`);
        if (!row && template && wanted(table, data)) {
          row = template.content.firstElementChild.cloneNode(true);
          row.setAttribute("data-row", data.execution_id);
          body.insertBefore(row, body.firstElementChild);
          for (const el of document.querySelectorAll("[data-live-empty]")) el.hidden = true;
        }
        if (row) fill(row, data);
        table.dispatchEvent(new CustomEvent("dpm:changed", { bubbles: true }));
      } else if (kind === "transfer" && data.execution_id) {
        const row = body.querySelector(`tr[data-row="${CSS.escape(data.execution_id)}"]`);
        if (!row) return;
        const eta = data.eta_seconds == null ? "" : `${Math.round(data.eta_seconds)} s left`;
        const shown = { bytes: `${human(data.bytes_done)} of ${human(data.bytes_total)}`,
                        rate: `${human(data.rate_bps)}/s`, eta };
        for (const el of row.querySelectorAll("[data-transfer]")) el.textContent = shown[el.getAttribute("data-transfer")] ?? "";
        const bar = row.querySelector("progress[data-transfer-bar]");
        if (bar && data.bytes_total) { bar.max = data.bytes_total; bar.value = data.bytes_done; }
      } else if (kind === "end") {
        status(url, "Finished");
      }
    });
  }

  // The refreshing element's focus as a selector for the same element in the new content, or null.
  function focused(el) {
    const a = document.activeElement;
    if (!a || a === el || !el.contains(a)) return null;
    if (a.id) return `#${CSS.escape(a.id)}`;
    if (a.name) return `[name="${CSS.escape(a.name)}"][value="${CSS.escape(a.value)}"]`;
    const href = a.getAttribute("href");
    return href ? `a[href="${CSS.escape(href)}"]` : null;
  }

  function typing(el) {
    const a = document.activeElement;
    if (!a || !el.contains(a)) return false;
    if (a.tagName === "TEXTAREA" || a.tagName === "SELECT") return true;
    return a.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset", "file"].includes(a.type);
  }

  const boxKey = (box) => `${box.name}\n${box.value}`;

  function swap(el, html) {
    const boxes = "input[type=checkbox][name]";
    const checked = new Set(Array.from(el.querySelectorAll(`${boxes}:checked`), boxKey));
    const focus = focused(el);
    el.innerHTML = html;
    for (const box of el.querySelectorAll(boxes)) if (checked.has(boxKey(box))) box.checked = true;
    bind(el);
    for (const all of document.querySelectorAll("input[data-select-all]")) consistent(all);
    const again = focus && el.querySelector(focus);
    if (again) again.focus();
  }

  function refreshing(el) {
    const url = el.getAttribute("data-refresh");
    const on = el.getAttribute("data-refresh-on");
    if (!url || !url.startsWith("/") || !on) return;
    let timer = null, busy = false, wanted = false;
    const later = () => { if (!timer) timer = setTimeout(run, 300); };
    async function run() {
      timer = null;
      if (busy) { wanted = true; return; }
      if (typing(el)) { el.addEventListener("focusout", later, { once: true }); return; }
      busy = true;
      try {
        const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        const html = answer.ok && answer.headers.get("content-type")?.startsWith("text/html") ? await answer.text() : null;
        if (html === null) return;
        if (typing(el)) { el.addEventListener("focusout", later, { once: true }); return; }
        swap(el, html);
      } catch (e) {
        // offline for a moment: the next event fetches again
      } finally {
        busy = false;
        if (wanted) { wanted = false; later(); }
      }
    }
    source(on).listeners.push(later);
  }

  function members(box) {
    const name = box.getAttribute("data-select-all");
    return Array.from(document.querySelectorAll(`input[type=checkbox][name="${CSS.escape(name)}"]`));
  }

  function consistent(box) {
    const all = members(box), on = all.filter((b) => b.checked).length;
    box.checked = all.length > 0 && on === all.length;
    box.indeterminate = on > 0 && on < all.length;
  }

  function selectAll(box) {
    box.addEventListener("change", () => {
      for (const el of members(box)) el.checked = box.checked;
    });
    consistent(box);
  }

  // One listener for every member box, those a refresh brings too: the select-all boxes follow them.
  document.addEventListener("change", (ev) => {
    const t = ev.target;
    if (!(t instanceof HTMLInputElement) || t.type !== "checkbox" || !t.name) return;
    for (const box of document.querySelectorAll(`input[data-select-all="${CSS.escape(t.name)}"]`)) consistent(box);
  });

  function shows(select) {
    const key = select.getAttribute("data-shows");
    const apply = () => {
      for (const el of document.querySelectorAll(`[data-for-${CSS.escape(key)}]`)) {
        el.hidden = el.getAttribute(`data-for-${key}`) !== select.value;
      }
    };
    select.addEventListener("change", apply);
    apply();
  }

  // What a page, or a fragment just swapped in, needs bound (not [data-live] or [data-refresh]: a
  // fragment holds none, and binding them twice would apply each event twice).
  function bind(root) {
    for (const box of root.querySelectorAll("input[data-select-all]")) selectAll(box);
    for (const select of root.querySelectorAll("select[data-shows]")) shows(select);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const table of document.querySelectorAll("[data-live]")) liveTable(table);
    for (const el of document.querySelectorAll("[data-refresh]")) refreshing(el);
    bind(document);
    document.documentElement.classList.add("js");
  });
})();
