"use strict";
// Workloads: a table per kind with desired and ready counts; Deployments, StatefulSets and
// ReplicaSets get a Scale control that asks the dashboard to patch their scale subresource
// with the user's credentials. Rows update in place so a half-typed count is not lost.
(function () {
  const { state, live, el } = window.K8sLite;
  const KINDS = [
    ["deployments", "Deployments"],
    ["statefulsets", "StatefulSets"],
    ["daemonsets", "DaemonSets"],
    ["replicasets", "ReplicaSets"],
    ["jobs", "Jobs"],
  ];
  const root = document.getElementById("workloads");
  const result = document.getElementById("scale-result");
  const tables = {};

  for (const [kind, title] of KINDS) {
    const head = kind === "jobs"
      ? ["Namespace", "Name", "Completions", "Succeeded", "Active", "Failed", "Status"]
      : ["Namespace", "Name", "Desired", "Ready", "Up-to-date", "Available", "Status"];
    const scalable = !["daemonsets", "jobs"].includes(kind);
    if (scalable) head.push("Scale");
    const tbody = el("tbody");
    const table = el("table", { class: "grid", id: `table-${kind}` },
      el("caption", { text: title }),
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h })))),
      tbody);
    root.append(table);
    tables[kind] = { tbody, rows: new Map(), scalable };
  }

  function status(kind, w) {
    if (kind === "jobs") {
      if (w.ready >= w.desired) return ["ok", "Complete"];
      return w.failed > 0 ? ["bad", "Failing"] : ["warn", "Running"];
    }
    if (w.desired === 0) return ["ok", "Scaled to zero"];
    const updated = w.updated === undefined ? w.desired : w.updated;
    if (w.ready >= w.desired && updated >= w.desired) return ["ok", "Ready"];
    return ["warn", "Progressing"];
  }

  async function scale(kind, w, input, button) {
    const replicas = Number(input.value);
    if (!Number.isInteger(replicas) || replicas < 0) {
      result.textContent = `Enter a whole number of replicas for ${w.name}.`;
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const response = await fetch("/api/scale", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ kind, namespace: w.namespace, name: w.name, replicas }),
      });
      const body = await response.json();
      result.textContent = response.ok
        ? `Scaled ${w.namespace}/${w.name} to ${body.replicas}.`
        : `Could not scale ${w.namespace}/${w.name}: ${body.message}`;
      delete input.dataset.edited;
    } catch (e) {
      result.textContent = `Could not scale ${w.name}: ${e}`;
    } finally {
      button.disabled = false;
    }
  }

  function makeRow(kind, key, w) {
    const cells = Array.from({ length: 7 }, (_, i) => el("td", { class: i >= 2 && i < 6 ? "num" : "" }));
    const row = el("tr", { "data-key": `${kind}/${key}` }, ...cells);
    const entry = { row, cells, w };
    if (tables[kind].scalable) {
      const id = `scale-${kind}-${key.replace(/[^a-zA-Z0-9-]/g, "_")}`;
      const input = el("input", { type: "number", min: "0", id, "aria-label": `Replicas for ${key}` });
      input.addEventListener("input", () => { input.dataset.edited = "1"; });
      const button = el("button", { type: "button", text: "Scale" });
      button.addEventListener("click", () => scale(kind, entry.w, input, button));
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") button.click(); });
      row.append(el("td", { class: "scale" }, input, " ", button));
      entry.input = input;
    }
    return entry;
  }

  function fill(kind, entry, w) {
    entry.w = w;
    const [cls, text] = status(kind, w);
    const values = kind === "jobs"
      ? [w.namespace, w.name, w.desired, w.ready, w.active, w.failed]
      : [w.namespace, w.name, w.desired, w.ready, w.updated ?? "–", w.available];
    values.forEach((v, i) => { entry.cells[i].textContent = String(v); });
    entry.cells[6].replaceChildren(el("span", { class: `badge ${cls}`, text }));
    if (entry.input && !entry.input.dataset.edited && document.activeElement !== entry.input) {
      entry.input.value = String(w.desired);
    }
  }

  function render(dirty) {
    for (const kind of dirty) {
      const { tbody, rows } = tables[kind];
      const objs = state[kind];
      for (const [key, entry] of rows) {
        if (!objs.has(key)) { entry.row.remove(); rows.delete(key); }
      }
      const keys = [...objs.keys()].sort();
      let previous = null;
      for (const key of keys) {
        let entry = rows.get(key);
        if (!entry) { entry = makeRow(kind, key, objs.get(key)); rows.set(key, entry); }
        fill(kind, entry, objs.get(key));
        const want = previous ? previous.nextSibling : tbody.firstChild;
        if (want !== entry.row) tbody.insertBefore(entry.row, want);
        previous = entry.row;
      }
      if (!keys.length && !tbody.querySelector(".empty")) {
        tbody.append(el("tr", { class: "empty" }, el("td", { colspan: "8", text: "None" })));
      } else if (keys.length) {
        tbody.querySelector(".empty")?.remove();
      }
    }
  }

  live(KINDS.map(([k]) => k), render);
})();
