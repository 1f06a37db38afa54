"use strict";
// Metrics: small time-series SVG plots of the points the dashboard samples from the
// components' Prometheus metrics, pushed live over server-sent events.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 420, H = 150, PAD_L = 46, PAD_R = 8, PAD_T = 10, PAD_B = 22;
  const PLOTS = [
    { id: "api-rate", title: "API server request rate", unit: "req/s", series: [["api_rate", "requests"]] },
    { id: "api-latency", title: "API server request latency", unit: "ms",
      series: [["api_latency_mean", "mean"], ["api_latency_p99", "p99"]] },
    { id: "sched-rate", title: "Scheduler throughput", unit: "pods/s", series: [["sched_rate", "scheduled"]] },
    { id: "pod-start", title: "Pod start-up latency (kubelets)", unit: "s",
      series: [["pod_start_mean", "mean"], ["pod_start_p99", "p99"]] },
  ];
  let points = [];
  const root = document.getElementById("plots");
  const figures = {};

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }

  for (const plot of PLOTS) {
    const fig = document.createElement("figure");
    fig.className = "plot";
    fig.id = `plot-${plot.id}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${plot.title} (${plot.unit})`;
    const graph = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
      "aria-label": `${plot.title}: no data yet` });
    const latest = document.createElement("p");
    latest.className = "latest";
    latest.setAttribute("aria-live", "polite");
    fig.append(caption, graph, latest);
    root.append(fig);
    figures[plot.id] = { graph, latest };
  }

  function draw() {
    const now = Date.now() / 1000;
    for (const plot of PLOTS) {
      const { graph, latest } = figures[plot.id];
      const values = [];
      for (const p of points) for (const [key] of plot.series) if (typeof p[key] === "number") values.push(p[key]);
      const t0 = points.length ? Math.min(points[0].t, now - 60) : now - 60;
      const max = Math.max(1e-9, ...values) * 1.1;
      const x = (t) => PAD_L + ((t - t0) / Math.max(1, now - t0)) * (W - PAD_L - PAD_R);
      const y = (v) => H - PAD_B - (v / max) * (H - PAD_T - PAD_B);
      const children = [
        svg("line", { class: "axis", x1: PAD_L, y1: H - PAD_B, x2: W - PAD_R, y2: H - PAD_B }),
        svg("line", { class: "axis", x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: H - PAD_B }),
        svg("text", { class: "tick", x: PAD_L - 4, y: PAD_T + 8, "text-anchor": "end" }, values.length ? fmt(max) : ""),
        svg("text", { class: "tick", x: PAD_L - 4, y: H - PAD_B, "text-anchor": "end" }, "0"),
        svg("text", { class: "tick", x: PAD_L, y: H - 6 }, `${Math.round((now - t0) / 60) || 1} min ago`),
        svg("text", { class: "tick", x: W - PAD_R, y: H - 6, "text-anchor": "end" }, "now"),
      ];
      const words = [];
      plot.series.forEach(([key, label], i) => {
        const coords = points.filter((p) => typeof p[key] === "number")
          .map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`);
        if (coords.length) {
          children.push(svg("polyline", { class: `line s${i}`, points: coords.join(" "), "data-series": key }));
        }
        const last = [...points].reverse().find((p) => typeof p[key] === "number");
        words.push(`${label} ${last ? fmt(last[key]) : "–"} ${plot.unit}`);
      });
      graph.replaceChildren(...children);
      const text = values.length ? words.join(" · ") : "No data yet";
      latest.textContent = text;
      graph.setAttribute("aria-label", `${plot.title}: ${text}`);
      graph.dataset.points = String(values.length);
    }
  }

  function showSources(sources) {
    const list = document.getElementById("sources");
    list.replaceChildren(...Object.entries(sources || {}).sort().map(([k, v]) => {
      const li = document.createElement("li");
      li.textContent = `${k}: ${v}`;
      return li;
    }));
  }

  function setConnection(live, text) {
    const p = document.getElementById("connection");
    p.textContent = text;
    p.className = "conn " + (live ? "conn-live" : "conn-connecting");
  }

  const source = new EventSource("/api/metrics");
  source.addEventListener("open", () => setConnection(true, "Live"));
  source.addEventListener("error", () => setConnection(false, "Reconnecting…"));
  source.addEventListener("history", (e) => {
    const data = JSON.parse(e.data);
    points = data.points;
    document.getElementById("interval").textContent = String(data.interval);
    showSources(data.sources);
    draw();
  });
  source.addEventListener("point", (e) => {
    const data = JSON.parse(e.data);
    points.push(data.point);
    if (points.length > 120) points = points.slice(-120);
    showSources(data.sources);
    draw();
  });
  draw();
})();
