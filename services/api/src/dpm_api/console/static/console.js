// The console's one script (progressive enhancement: every page works without it, it only keeps
// pages current and saves clicks). Values are only ever written with textContent, attributes and
// progress values, never as HTML, except fragments our own server rendered (autoescaped) for
// [data-refresh]. The CSP allows scripts from our origin only, so nothing inline runs anyway.
//
// Conventions (docs/console.md, "Live updates in pages"):
//   <table data-live="/console/executions/stream?run_id=…">   rows <tr data-row="<execution id>">
//     [data-field=name]  text of row[name] (<progress data-field=percent> gets its value)
//     [data-transfer=bytes|rate|eta]  the latest ChunkSent of that execution
//     <template data-row-template>  cloned for an execution the page did not have (new rows first)
//     [data-href="/console/machines/{machine_id}"]  links filled from the row
//   [data-live-status]  "Live", "Reconnecting…", "Finished"
//   [data-refresh="<fragment url>"][data-refresh-on="<stream url>"]  re-fetched (debounced) on events
//   <input type=checkbox data-select-all="machine">  checks every input[name=machine] on the page
"use strict";

(function () {
  const sources = new Map();

  function source(url) {
    if (!sources.has(url)) {
      const es = new EventSource(url);
      const entry = { es, listeners: [] };
      for (const kind of ["execution", "transfer", "end"]) {
        es.addEventListener(kind, (ev) => {
          let data = {};
          try { data = JSON.parse(ev.data); } catch (e) { return; }
          if (kind === "end") es.close();
          for (const fn of entry.listeners) fn(kind, data);
        });
      }
      es.addEventListener("open", () => status(url, "Live"));
      es.addEventListener("error", () => status(url, es.readyState === 2 ? "Finished" : "Reconnecting…"));
      sources.set(url, entry);
    }
    return sources.get(url);
  }

  function status(url, text) {
    for (const el of document.querySelectorAll("[data-live-status]")) {
      const of = el.getAttribute("data-live-status");
      if (!of || of === url) el.textContent = text;
    }
  }

  function fill(row, data) {
    row.setAttribute("data-state", data.state || "");
    for (const el of row.querySelectorAll("[data-field]")) {
      const value = data[el.getAttribute("data-field")];
      if (value === undefined) continue;
      if (el.tagName === "PROGRESS") el.value = Number(value) || 0;
      else el.textContent = value === null ? "" : String(value);
    }
    for (const el of row.querySelectorAll("[data-href]")) {
      const href = el.getAttribute("data-href").replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(data[k] ?? ""));
      if (href.startsWith("/")) el.setAttribute("href", href);
    }
  }

  function human(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = Number(bytes) || 0, i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function liveTable(table) {
    const url = table.getAttribute("data-live");
    const body = table.tBodies[0] || table.createTBody();
    const template = table.querySelector("template[data-row-template]");
    source(url).listeners.push((kind, data) => {
      if (kind === "execution") {
        let row = body.querySelector(`tr[data-row="${CSS.escape(data.execution_id || "")}"]`);
        if (!row && template) {
          row = template.content.firstElementChild.cloneNode(true);
          row.setAttribute("data-row", data.execution_id);
          body.insertBefore(row, body.firstElementChild);
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

  function refreshing(el) {
    const url = el.getAttribute("data-refresh");
    const on = el.getAttribute("data-refresh-on");
    if (!url || !url.startsWith("/") || !on) return;
    let timer = null;
    source(on).listeners.push(() => {
      if (timer) return;
      timer = setTimeout(async () => {
        timer = null;
        const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (answer.ok && answer.headers.get("content-type")?.startsWith("text/html")) el.innerHTML = await answer.text();
      }, 300);
    });
  }

  function selectAll(box) {
    const name = box.getAttribute("data-select-all");
    box.addEventListener("change", () => {
      for (const el of document.querySelectorAll(`input[type=checkbox][name="${CSS.escape(name)}"]`)) el.checked = box.checked;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const table of document.querySelectorAll("[data-live]")) liveTable(table);
    for (const el of document.querySelectorAll("[data-refresh]")) refreshing(el);
    for (const box of document.querySelectorAll("input[data-select-all]")) selectAll(box);
    document.documentElement.classList.add("js");
  });
})();
