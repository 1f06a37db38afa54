"use strict";
// Workloads: a table per kind with desired and ready counts; Deployments, StatefulSets and
// ReplicaSets get a Scale control that asks the dashboard to patch their scale subresource
// with the user's credentials. Rows update in place so a half-typed count is not lost.
// Deployments, StatefulSets and DaemonSets have Restart (kubectl rollout restart), and
// Deployments Undo (kubectl rollout undo: back to the previous ReplicaSet's template) and
// their pods drawn by ReplicaSet revision, so a rollout shows old and new pods changing over.
(function () {
  const { state, live, el } = window.K8sLite;
  const KINDS = [
    ["deployments", "Deployments"],
    ["statefulsets", "StatefulSets"],
    ["daemonsets", "DaemonSets"],
    ["replicasets", "ReplicaSets"],
    ["jobs", "Jobs"],
  ];
  const ROLLOUT = ["deployments", "statefulsets", "daemonsets"];
  const root = document.getElementById("workloads");
  const result = document.getElementById("scale-result");
  const tables = {};

  for (const [kind, title] of KINDS) {
    const head = kind === "jobs"
      ? ["Namespace", "Name", "Completions", "Succeeded", "Active", "Failed", "Status"]
      : ["Namespace", "Name", "Desired", "Ready", "Up-to-date", "Available", "Status"];
    const scalable = !["daemonsets", "jobs"].includes(kind);
    if (scalable) head.push("Scale");
    if (ROLLOUT.includes(kind)) head.push("Rollout");
    if (kind === "deployments") head.push("Pods by revision");
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

  async function rollout(action, kind, w, button) {
    button.disabled = true;
    try {
      const response = await fetch("/api/rollout", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ action, kind, namespace: w.namespace, name: w.name }),
      });
      const body = await response.json();
      result.textContent = response.ok ? body.message
        : `Could not ${action} ${w.namespace}/${w.name}: ${body.message}`;
    } catch (e) {
      result.textContent = `Could not ${action} ${w.name}: ${e}`;
    } finally {
      button.disabled = false;
    }
  }

  function podCell(p) {
    const label = `${p.namespace}/${p.name}: ${p.status}${p.ready ? ", ready" : ""}`;
    const s = p.status.toLowerCase();
    const cls = ["running", "pending", "succeeded", "terminating"].includes(s) ? s
      : (/err|backoff|fail|invalid/i.test(p.status) ? "failed" : "pending");
    return el("span", { class: `pod st-${cls}${p.ready ? "" : " notready"}`, role: "img",
      "data-pod": `${p.namespace}/${p.name}`, "data-status": p.status, title: label, "aria-label": label });
  }

  let podsBySet = new Map(); // "namespace/replicaset" -> its pods

  function groupPods() {
    podsBySet = new Map();
    for (const p of state.pods.values()) {
      if (!p.owner.startsWith("ReplicaSet/")) continue;
      const key = `${p.namespace}/${p.owner.slice("ReplicaSet/".length)}`;
      if (!podsBySet.has(key)) podsBySet.set(key, []);
      podsBySet.get(key).push(p);
    }
  }

  // A Deployment's ReplicaSets (newest revision first) with their pods.
  function changeover(w) {
    const sets = [...state.replicasets.values()]
      .filter((rs) => rs.namespace === w.namespace && rs.owner === w.name)
      .sort((a, b) => Number(b.revision || 0) - Number(a.revision || 0));
    const groups = [];
    for (const rs of sets) {
      const pods = (podsBySet.get(`${rs.namespace}/${rs.name}`) || []).sort((a, b) => a.name.localeCompare(b.name));
      if (!pods.length && rs.desired === 0) continue;
      const isNew = rs.revision && rs.revision === w.revision;
      groups.push(el("div", { class: `rs ${isNew ? "rs-new" : "rs-old"}`, "data-rs": rs.name,
        "data-revision": rs.revision || "" },
        el("span", { class: "rs-label", text: `rev ${rs.revision || "?"} ${isNew ? "new" : "old"} ${pods.length}` }),
        ...pods.slice(0, 40).map(podCell)));
    }
    return groups.length ? groups : [el("span", { class: "empty", text: "no pods" })];
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
    if (ROLLOUT.includes(kind)) {
      const restart = el("button", { type: "button", text: "Restart", "aria-label": `Restart ${key}` });
      restart.addEventListener("click", () => rollout("restart", kind, entry.w, restart));
      const cell = el("td", { class: "rollout" }, restart);
      if (kind === "deployments") {
        const undo = el("button", { type: "button", text: "Undo", "aria-label": `Undo the last rollout of ${key}` });
        undo.addEventListener("click", () => rollout("undo", kind, entry.w, undo));
        cell.append(" ", undo);
      }
      row.append(cell);
    }
    if (kind === "deployments") {
      entry.pods = el("td", { class: "changeover" });
      row.append(entry.pods);
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
    if (entry.pods) entry.pods.replaceChildren(...changeover(w));
    if (entry.input && !entry.input.dataset.edited && document.activeElement !== entry.input) {
      entry.input.value = String(w.desired);
    }
  }

  function render(dirty) {
    // Pods and ReplicaSets change the Deployments' changeover column.
    if (dirty.has("pods") || dirty.has("replicasets")) {
      groupPods();
      dirty.add("deployments");
    }
    for (const kind of dirty) {
      if (!tables[kind]) continue;
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
        tbody.append(el("tr", { class: "empty" }, el("td", { colspan: "10", text: "None" })));
      } else if (keys.length) {
        tbody.querySelector(".empty")?.remove();
      }
    }
  }

  live([...KINDS.map(([k]) => k), "pods"], render);
})();
