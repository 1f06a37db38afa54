"use strict";
// Cluster: a tile per node (colour and text for readiness) holding its pods as small cells,
// or as counts by status once a node has more than CELLS_MAX pods, so thousands of nodes and
// their pods stay a few DOM nodes each. Only tiles whose content changed are rebuilt. Each
// tile is filled by what its pods request of the node's allocatable CPU and memory (the
// scheduler's view), drawn as meters with the figures written out.
(function () {
  const { state, live, el, isSynced } = window.K8sLite;
  const CELLS_MAX = 16;
  const UNSCHEDULED = "\u0000unscheduled";
  const tiles = new Map(); // node name -> {tile, signature}
  const grid = document.getElementById("nodes");
  const summary = document.getElementById("summary");

  function statusClass(status) {
    const s = status.toLowerCase();
    if (s === "running" || s === "pending" || s === "succeeded" || s === "terminating") return s;
    if (s === "failed" || /err|backoff|invalid/i.test(status)) return "failed";
    return "pending"; // ContainerCreating and other waiting reasons
  }

  function readiness(node) {
    if (node.ready === "True") return ["ready", "Ready"];
    if (node.ready === "False") return ["notready", "NotReady"];
    return ["unknown", "Unknown"];
  }

  function podCell(pod) {
    const label = `${pod.namespace}/${pod.name}: ${pod.status}${pod.ready ? ", ready" : ""}`;
    return el("span", {
      class: `pod st-${statusClass(pod.status)}${pod.ready ? "" : " notready"}`,
      "data-pod": `${pod.namespace}/${pod.name}`,
      "data-status": pod.status,
      title: label,
      "aria-label": label,
      role: "img",
    });
  }

  function podsBlock(pods) {
    if (pods.length <= CELLS_MAX) {
      pods.sort((a, b) => (a.namespace + a.name).localeCompare(b.namespace + b.name));
      return el("div", { class: "pods" }, ...pods.map(podCell));
    }
    const counts = new Map();
    for (const p of pods) counts.set(p.status, (counts.get(p.status) || 0) + 1);
    const items = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([s, n]) =>
      el("li", {}, el("span", { class: `pod st-${statusClass(s)}`, "aria-hidden": "true" }),
        ` ${n} ${s}`));
    return el("ul", { class: "counts", "aria-label": `${pods.length} pods` }, ...items);
  }

  // Pods that hold their requests: every bound pod but those that have finished.
  function allocated(pods) {
    let cpu = 0, mem = 0;
    for (const p of pods) {
      if (p.status === "Succeeded" || p.status === "Failed") continue;
      cpu += p.cpuM || 0;
      mem += p.memB || 0;
    }
    return [cpu, mem];
  }

  function cores(milli) {
    return milli % 1000 === 0 ? String(milli / 1000) : (milli / 1000).toFixed(2).replace(/0+$/, "");
  }

  function bytes(n) {
    const units = ["B", "Ki", "Mi", "Gi", "Ti"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)}${units[i]}`;
  }

  function meter(label, used, total, show) {
    const ratio = total > 0 ? used / total : 0;
    const pct = Math.round(ratio * 100);
    const text = `${label} ${show(used)} of ${show(total)} (${pct}%)`;
    return el("div", { class: "alloc" },
      el("meter", { min: "0", max: "1", low: "0.7", high: "0.9", optimum: "0",
        value: String(Math.min(1, ratio)), "aria-label": `${label} requested` }),
      el("span", { class: `alloc-text${ratio > 1 ? " over" : ""}`, text }));
  }

  function tileFor(name, node, pods) {
    const [cls, text] = node ? readiness(node) : ["unscheduled", ""];
    const state = node && node.unschedulable ? `${text}, SchedulingDisabled` : text;
    const title = node ? name : "Not scheduled";
    const tile = el("section", {
      class: `node ${cls}`,
      "data-node": node ? name : "",
      tabindex: "0",
      "aria-label": `${title}: ${state || "pods waiting for a node"}, ${pods.length} pods`,
    },
      el("h3", { text: title }),
      node ? el("p", { class: "state", text: state }) : null,
      node ? meter("CPU", ...cpuOf(node, pods), cores) : null,
      node ? meter("Memory", ...memOf(node, pods), bytes) : null,
      el("p", { class: "res", text: `${pods.length} pod${pods.length === 1 ? "" : "s"}` }),
      podsBlock(pods));
    return tile;
  }

  function cpuOf(node, pods) { return [allocated(pods)[0], node.cpuM || 0]; }
  function memOf(node, pods) { return [allocated(pods)[1], node.memB || 0]; }

  function signature(node, pods) {
    const [cpu, mem] = allocated(pods);
    const head = node
      ? `${node.ready}|${node.unschedulable}|${node.cpuM}|${node.memB}|${cpu}|${mem}`
      : "-";
    if (pods.length > CELLS_MAX) {
      const c = {};
      for (const p of pods) c[p.status] = (c[p.status] || 0) + 1;
      return head + JSON.stringify(c) + pods.length;
    }
    return head + pods.map((p) => `${p.namespace}/${p.name}:${p.status}:${p.ready}`).sort().join(",");
  }

  function render() {
    const byNode = new Map();
    for (const pod of state.pods.values()) {
      const key = pod.node || UNSCHEDULED;
      if (!byNode.has(key)) byNode.set(key, []);
      byNode.get(key).push(pod);
    }
    const names = [...state.nodes.keys()].sort();
    if (byNode.has(UNSCHEDULED)) names.unshift(UNSCHEDULED);
    const seen = new Set(names);
    for (const [name, entry] of tiles) {
      if (!seen.has(name)) { entry.tile.remove(); tiles.delete(name); }
    }
    let previous = null;
    for (const name of names) {
      const node = state.nodes.get(name) || null;
      const pods = byNode.get(name) || [];
      const sig = signature(node, pods);
      let entry = tiles.get(name);
      if (!entry || entry.signature !== sig) {
        const tile = tileFor(name, node, pods);
        if (entry) entry.tile.replaceWith(tile);
        entry = { tile, signature: sig };
        tiles.set(name, entry);
      }
      // Keep DOM order = sorted order, moving only what is out of place.
      const want = previous ? previous.nextSibling : grid.firstChild;
      if (want !== entry.tile) grid.insertBefore(entry.tile, want);
      previous = entry.tile;
    }
    let ready = 0;
    for (const n of state.nodes.values()) if (n.ready === "True") ready++;
    const running = [...state.pods.values()].filter((p) => p.status === "Running").length;
    const loading = isSynced("nodes") && isSynced("pods") ? "" : " (loading…)";
    if (!loading && !performance.getEntriesByName("k8slite-first-view").length) {
      performance.mark("k8slite-first-view"); // the whole cluster drawn (for the bench)
    }
    summary.textContent = `${state.nodes.size} nodes, ${ready} Ready · ${state.pods.size} pods, ` +
      `${running} Running${loading}`;
  }

  live(["nodes", "pods"], render);
})();
