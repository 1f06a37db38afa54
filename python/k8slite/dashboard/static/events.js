"use strict";
// Events: newest first, filtered by type and reason (the reason list grows as reasons are
// seen). At most ROWS_MAX rows are drawn; the count says how many match.
(function () {
  const { state, live, el } = window.K8sLite;
  const ROWS_MAX = 500;
  const tbody = document.querySelector("#events tbody");
  const typeFilter = document.getElementById("filter-type");
  const reasonFilter = document.getElementById("filter-reason");
  const count = document.getElementById("event-count");
  const reasons = new Set();

  function syncReasons() {
    let changed = false;
    for (const e of state.events.values()) {
      if (e.reason && !reasons.has(e.reason)) { reasons.add(e.reason); changed = true; }
    }
    if (!changed) return;
    const chosen = reasonFilter.value;
    const options = [el("option", { value: "", text: "All" })];
    for (const r of [...reasons].sort()) options.push(el("option", { value: r, text: r }));
    reasonFilter.replaceChildren(...options);
    reasonFilter.value = chosen;
  }

  function render() {
    syncReasons();
    const type = typeFilter.value;
    const reason = reasonFilter.value;
    const matching = [...state.events.values()]
      .filter((e) => (!type || e.type === type) && (!reason || e.reason === reason))
      .sort((a, b) => (b.time || "").localeCompare(a.time || ""));
    const rows = matching.slice(0, ROWS_MAX).map((e) =>
      el("tr", { class: e.type, "data-type": e.type, "data-reason": e.reason },
        el("td", { text: (e.time || "").replace("T", " ").replace("Z", "") }),
        el("td", { text: e.type }),
        el("td", { text: e.reason }),
        el("td", { text: e.namespace }),
        el("td", { text: e.object }),
        el("td", { text: e.message }),
        el("td", { class: "num", text: String(e.count) })));
    tbody.replaceChildren(...rows);
    const shown = matching.length > ROWS_MAX ? ` (newest ${ROWS_MAX} shown)` : "";
    count.textContent = `${matching.length} of ${state.events.size} events${shown}`;
  }

  typeFilter.addEventListener("change", render);
  reasonFilter.addEventListener("change", render);
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  live(["events"], render);
})();
