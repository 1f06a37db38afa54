"use strict";
// Pods: filtered by namespace, label selector (kubectl's syntax: a=b, a!=b, a in (x,y),
// a notin (x), a, !a) and status; at most ROWS_MAX rows drawn. Choosing a pod (its name, or
// the address's #namespace/name) opens its YAML (read from the API server), its events (from
// the page's stream), its log followed live and an exec session, each through the API server
// with the user's credentials.
(function () {
  const { state, live, el } = window.K8sLite;
  const ROWS_MAX = 500;
  const LOG_LINES_MAX = 5000;
  const $ = (id) => document.getElementById(id);
  const tbody = document.querySelector("#pods tbody");
  const nsFilter = $("filter-namespace");
  const labelFilter = $("filter-labels");
  const statusFilter = $("filter-status");
  const namespaces = new Set();
  const statuses = new Set();
  let selected = null; // "namespace/name"
  let logSource = null;
  let socket = null;

  // ------------------------------------------------------------------ label selectors

  function splitTop(text) {
    const parts = [];
    let depth = 0, start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "(") depth++;
      else if (c === ")") depth--;
      else if (c === "," && depth === 0) { parts.push(text.slice(start, i)); start = i + 1; }
    }
    parts.push(text.slice(start));
    return parts.map((p) => p.trim()).filter((p) => p);
  }

  const KEY = "[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?";
  const VALUE = "([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?";

  function parseSelector(text) {
    const reqs = [];
    for (const part of splitTop(text)) {
      let m;
      if ((m = part.match(new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^)]*)\\)$`)))) {
        const values = m[4].split(",").map((v) => v.trim()).filter((v) => v);
        reqs.push({ key: m[1], op: m[3], values: new Set(values) });
      } else if ((m = part.match(new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`)))) {
        reqs.push({ key: m[1], op: m[3] === "!=" ? "!=" : "=", values: new Set([m[4]]) });
      } else if ((m = part.match(new RegExp(`^!\\s*(${KEY})$`)))) {
        reqs.push({ key: m[1], op: "!" });
      } else if ((m = part.match(new RegExp(`^(${KEY})$`)))) {
        reqs.push({ key: m[1], op: "exists" });
      } else {
        throw new Error(`cannot parse "${part}"`);
      }
    }
    return reqs;
  }

  function matches(reqs, labels) {
    for (const r of reqs) {
      const has = Object.prototype.hasOwnProperty.call(labels, r.key);
      const v = labels[r.key];
      if (r.op === "exists" && !has) return false;
      if (r.op === "!" && has) return false;
      if ((r.op === "=" || r.op === "in") && !(has && r.values.has(v))) return false;
      if ((r.op === "!=" || r.op === "notin") && has && r.values.has(v)) return false;
    }
    return true;
  }

  // ------------------------------------------------------------------ the list

  function age(created) {
    if (!created) return "";
    const s = Math.max(0, Math.floor((Date.now() - Date.parse(created)) / 1000));
    if (s < 120) return `${s}s`;
    if (s < 7200) return `${Math.floor(s / 60)}m`;
    if (s < 172800) return `${Math.floor(s / 3600)}h`;
    return `${Math.floor(s / 86400)}d`;
  }

  function statusClass(status) {
    if (status === "Running" || status === "Succeeded") return "ok";
    if (status === "Pending" || status === "ContainerCreating" || status === "Terminating") return "warn";
    return "bad";
  }

  function refreshOptions(select, values, seen) {
    let changed = false;
    for (const v of values) if (v && !seen.has(v)) { seen.add(v); changed = true; }
    if (!changed) return;
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "All" }),
      ...[...seen].sort().map((v) => el("option", { value: v, text: v })));
    select.value = chosen;
  }

  function renderList() {
    const pods = [...state.pods.values()];
    refreshOptions(nsFilter, pods.map((p) => p.namespace), namespaces);
    refreshOptions(statusFilter, pods.map((p) => p.status), statuses);
    let reqs = [];
    try {
      reqs = parseSelector(labelFilter.value);
      $("selector-error").textContent = "";
      labelFilter.removeAttribute("aria-invalid");
    } catch (e) {
      $("selector-error").textContent = `Label selector: ${e.message}`;
      labelFilter.setAttribute("aria-invalid", "true");
    }
    const ns = nsFilter.value, status = statusFilter.value;
    const matching = pods
      .filter((p) => (!ns || p.namespace === ns) && (!status || p.status === status) &&
        matches(reqs, p.labels || {}))
      .sort((a, b) => (a.namespace + "/" + a.name).localeCompare(b.namespace + "/" + b.name));
    const rows = matching.slice(0, ROWS_MAX).map((p) => {
      const key = `${p.namespace}/${p.name}`;
      const link = el("a", { href: `#${key}`, text: p.name, "data-open": key });
      return el("tr", { "data-pod": key, "data-status": p.status, class: key === selected ? "selected" : "" },
        el("td", { text: p.namespace }),
        el("td", {}, link),
        el("td", {}, el("span", { class: `badge ${statusClass(p.status)}`, text: p.status })),
        el("td", { text: p.ready ? "Ready" : "Not ready" }),
        el("td", { class: "num", text: String(p.restarts || 0) }),
        el("td", { text: p.node || "—" }),
        el("td", { text: p.ip || "" }),
        el("td", { text: age(p.created) }));
    });
    tbody.replaceChildren(...rows);
    const shown = matching.length > ROWS_MAX ? ` (first ${ROWS_MAX} shown)` : "";
    $("pod-count").textContent = `${matching.length} of ${state.pods.size} pods${shown}`;
  }

  // ------------------------------------------------------------------ the chosen pod

  function selectedPod() {
    return selected ? state.pods.get(selected) : undefined;
  }

  function renderDetail() {
    if (!selected) return;
    const pod = selectedPod();
    $("detail-status").textContent = pod
      ? `${pod.status}${pod.ready ? ", ready" : ""} on ${pod.node || "no node yet"}`
      : "This pod is gone.";
    for (const id of ["log-container", "exec-container"]) {
      const select = $(id);
      const names = pod ? pod.containers || [] : [];
      if (names.join(",") !== [...select.options].map((o) => o.value).join(",")) {
        const chosen = select.value;
        select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
        if (names.includes(chosen)) select.value = chosen;
      }
    }
    const [ns, name] = selected.split("/");
    const events = [...state.events.values()]
      .filter((e) => e.object === `Pod/${name}` && (e.objectNamespace || e.namespace) === ns)
      .sort((a, b) => (b.time || "").localeCompare(a.time || ""));
    $("pod-events").querySelector("tbody").replaceChildren(...(events.length ? events.map((e) =>
      el("tr", { class: e.type, "data-reason": e.reason },
        el("td", { text: (e.time || "").replace("T", " ").replace("Z", "") }),
        el("td", { text: e.type }),
        el("td", { text: e.reason }),
        el("td", { text: e.message }),
        el("td", { class: "num", text: String(e.count) })))
      : [el("tr", { class: "empty" }, el("td", { colspan: "5", text: "No events" }))]));
  }

  async function loadYaml() {
    const [namespace, name] = selected.split("/");
    const pre = $("pod-yaml");
    pre.textContent = "Loading…";
    try {
      const q = new URLSearchParams({ namespace, name });
      const response = await fetch(`/api/pod?${q}`);
      const body = await response.json();
      if (`${namespace}/${name}` !== selected) return;
      pre.textContent = response.ok ? body.yaml : `Could not read the pod: ${body.message}`;
    } catch (e) {
      pre.textContent = `Could not read the pod: ${e}`;
    }
  }

  function stopLogs() {
    if (logSource) { logSource.close(); logSource = null; }
  }

  function startLogs() {
    stopLogs();
    const pre = $("pod-log");
    pre.textContent = "";
    const [namespace, name] = selected.split("/");
    const q = new URLSearchParams({ namespace, name });
    if ($("log-container").value) q.set("container", $("log-container").value);
    $("log-state").textContent = "Connecting…";
    const source = new EventSource(`/api/logs?${q}`);
    logSource = source;
    let count = 0;
    source.addEventListener("open", () => { $("log-state").textContent = "Following"; });
    source.addEventListener("lines", (e) => {
      const lines = JSON.parse(e.data);
      pre.append(lines.join("\n") + "\n");
      count += lines.length;
      if (count > LOG_LINES_MAX) {
        pre.textContent = pre.textContent.split("\n").slice(-LOG_LINES_MAX).join("\n");
        count = LOG_LINES_MAX;
      }
      if ($("log-follow").checked) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", () => {
      $("log-state").textContent = "The log ended";
      source.close();
    });
    source.addEventListener("error", () => {
      // A refused request (the pod not started yet) ends the source; EventSource retries
      // a dropped one by itself.
      if (source.readyState === EventSource.CLOSED) {
        $("log-state").textContent = "Not available (the pod may not have started)";
      } else {
        $("log-state").textContent = "Reconnecting…";
      }
    });
  }

  function execLine(text, cls) {
    const out = $("exec-output");
    out.append(el("span", { class: cls, text }));
    out.scrollTop = out.scrollHeight;
  }

  function closeExec() {
    if (socket) { socket.close(); socket = null; }
    $("exec-input").disabled = true;
    $("exec-connect").disabled = false;
    $("exec-close").disabled = true;
  }

  function openExec() {
    closeExec();
    const [namespace, name] = selected.split("/");
    const q = new URLSearchParams({ namespace, name });
    if ($("exec-container").value) q.set("container", $("exec-container").value);
    for (const word of $("exec-command").value.trim().split(/\s+/)) if (word) q.append("command", word);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/exec?${q}`);
    socket = ws;
    $("exec-state").textContent = "Connecting…";
    $("exec-connect").disabled = true;
    $("exec-close").disabled = false;
    ws.addEventListener("open", () => {
      $("exec-state").textContent = "Connected";
      $("exec-input").disabled = false;
      $("exec-input").focus();
    });
    ws.addEventListener("message", (e) => {
      const m = JSON.parse(e.data);
      if (m.stream) execLine(m.data, m.stream);
      else if ("exit" in m) {
        const text = m.exit === 0 ? "Exited with code 0" :
          m.exit !== null ? `Exited with code ${m.exit}` : m.message;
        execLine(`[${text}]\n`, "note");
        $("exec-state").textContent = text;
      }
    });
    ws.addEventListener("close", () => {
      if (socket === ws) {
        socket = null;
        if (!/Exited|exec|not|cannot/i.test($("exec-state").textContent)) $("exec-state").textContent = "Closed";
        $("exec-input").disabled = true;
        $("exec-connect").disabled = false;
        $("exec-close").disabled = true;
      }
    });
  }

  function sendLine(e) {
    e.preventDefault();
    const input = $("exec-input");
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    execLine(`$ ${input.value}\n`, "echo");
    socket.send(input.value + "\n");
    input.value = "";
  }

  // ------------------------------------------------------------------ tabs

  const TABS = ["yaml", "events", "logs", "exec"];

  function showTab(which, focus) {
    for (const t of TABS) {
      const tab = $(`tab-${t}`);
      const on = t === which;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      $(`panel-${t}`).hidden = !on;
      if (on && focus) tab.focus();
    }
    if (which === "logs" && !logSource) startLogs();
    if (which !== "logs") stopLogs();
  }

  TABS.forEach((t, i) => {
    const tab = $(`tab-${t}`);
    tab.addEventListener("click", () => showTab(t, false));
    tab.addEventListener("keydown", (e) => {
      // The arrow keys move between tabs (the WAI-ARIA tabs pattern).
      let next = null;
      if (e.key === "ArrowRight") next = TABS[(i + 1) % TABS.length];
      if (e.key === "ArrowLeft") next = TABS[(i + TABS.length - 1) % TABS.length];
      if (e.key === "Home") next = TABS[0];
      if (e.key === "End") next = TABS[TABS.length - 1];
      if (next) { e.preventDefault(); showTab(next, true); }
    });
  });

  function open(key) {
    if (!key || !key.includes("/")) return;
    if (selected !== key) {
      stopLogs();
      closeExec();
      $("exec-output").textContent = "";
      $("exec-state").textContent = "";
      selected = key;
      $("detail").hidden = false;
      $("detail-title").textContent = key;
      renderDetail();
      loadYaml();
      const logsOpen = $("tab-logs").getAttribute("aria-selected") === "true";
      if (logsOpen) startLogs();
    }
    for (const row of tbody.rows) row.classList.toggle("selected", row.dataset.pod === key);
  }

  window.addEventListener("hashchange", () => {
    open(decodeURIComponent(location.hash.slice(1)));
    $("detail-title").focus();
  });
  for (const f of [nsFilter, statusFilter]) f.addEventListener("change", renderList);
  labelFilter.addEventListener("input", renderList);
  $("pod-filters").addEventListener("submit", (e) => e.preventDefault());
  $("log-form").addEventListener("submit", (e) => e.preventDefault());
  $("log-container").addEventListener("change", startLogs);
  $("exec-form").addEventListener("submit", (e) => { e.preventDefault(); openExec(); });
  $("exec-close").addEventListener("click", closeExec);
  $("exec-line-form").addEventListener("submit", sendLine);

  live(["pods", "events"], (dirty) => {
    if (dirty.has("pods")) renderList();
    renderDetail();
  });
  if (location.hash.length > 1) open(decodeURIComponent(location.hash.slice(1)));
})();
