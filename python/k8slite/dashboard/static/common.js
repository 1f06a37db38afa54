"use strict";
// The one live stream of a page: a snapshot of its kinds, then batches of changes.
// window.K8sLite.live(kinds, render) keeps K8sLite.state[kind] (a Map key -> trimmed object)
// current and calls render(dirtyKinds) at most once per animation frame. A "reset" change
// replaces a whole kind (its first list, or a relist).
(function () {
  const state = {};
  let synced = {};

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function setConnection(live, text) {
    const p = document.getElementById("connection");
    if (!p) return;
    p.textContent = text;
    p.className = "conn " + (live ? "conn-live" : "conn-connecting");
  }

  function live(kinds, render) {
    for (const k of kinds) state[k] = new Map();
    const dirty = new Set();
    let scheduled = false;
    function schedule(kind) {
      dirty.add(kind);
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        const kinds = new Set(dirty);
        dirty.clear();
        render(kinds);
      });
    }
    const source = new EventSource("/api/stream?kinds=" + encodeURIComponent(kinds.join(",")));
    source.addEventListener("open", () => setConnection(true, "Live"));
    source.addEventListener("error", () => setConnection(false, "Reconnecting…"));
    source.addEventListener("snapshot", (e) => {
      // Marks for benches/dashboard.py: when the snapshot and each kind's list arrived.
      performance.mark("k8slite-snapshot");
      const data = JSON.parse(e.data);
      synced = data.synced;
      for (const k of kinds) {
        state[k] = new Map(Object.entries(data.objects[k] || {}));
        schedule(k);
      }
      setConnection(true, "Live");
    });
    source.addEventListener("changes", (e) => {
      const data = JSON.parse(e.data);
      for (const k of data.synced) synced[k] = true;
      for (const c of data.changes) {
        if (c.op === "reset") {
          performance.mark(`k8slite-reset-${c.kind}`);
          state[c.kind] = new Map(Object.entries(c.objects));
        }
        else if (c.op === "delete") state[c.kind].delete(c.key);
        else state[c.kind].set(c.key, c.obj);
        schedule(c.kind);
      }
      for (const k of data.synced) schedule(k);
    });
  }

  function isSynced(kind) { return !!synced[kind]; }

  window.K8sLite = { state, live, el, isSynced };
})();
