// The ops page: reads /ops/api/overview, draws it with uPlot, and reads again every few seconds.
// `?refresh=N` sets the period in seconds (default 15); `?window=` and `?team=` the view.
(() => {
  const STATUSES = ["PENDING", "SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"];
  const COLORS = {
    PENDING: "#9ca3af",
    SENT: "#3b82f6",
    DELIVERED: "#10b981",
    READ: "#8b5cf6",
    FAILED: "#ef4444",
    EXPIRED: "#f59e0b",
  };
  const PERCENTILES = [
    ["p50", "#10b981"],
    ["p95", "#f59e0b"],
    ["p99", "#ef4444"],
  ];
  const TARGETS = ["sent", "delivered", "read"];
  const params = new URLSearchParams(location.search);
  const refreshSeconds = Math.min(Math.max(Number(params.get("refresh")) || 15, 1), 300);
  const $ = (id) => document.getElementById(id);
  const windowSelect = $("window");
  windowSelect.value = ["1h", "24h", "7d"].includes(params.get("window")) ? params.get("window") : "24h";
  const teamSelect = $("team");
  let team = params.get("team") ?? ""; // "" is all teams

  // The choice of teams comes with the data; the chosen one stays listed even if it has nothing yet.
  function fillTeams(teams) {
    const wanted = ["", ...new Set([...teams, ...(team ? [team] : [])])].sort();
    const shown = Array.from(teamSelect.options, (o) => o.value);
    if (shown.join("\n") !== wanted.join("\n")) {
      teamSelect.replaceChildren(
        ...wanted.map((name) => {
          const option = document.createElement("option");
          option.value = name;
          option.textContent = name === "" ? "all teams" : name;
          return option;
        }),
      );
    }
    teamSelect.value = team;
  }

  const count = (n) => n.toLocaleString("en-US");
  const duration = (s) => {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${(s / 60).toFixed(1)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  };
  const time = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { timeZone: "UTC" }) : "–");
  // "3.5 min ago" / "in 4.0 min", from the data's own read time so it does not drift with the browser clock.
  let readAtMs = Date.now();
  const relative = (iso) => {
    if (!iso) return "–";
    const seconds = (new Date(iso).getTime() - readAtMs) / 1000;
    return seconds < 0 ? `${duration(-seconds)} ago` : `in ${duration(seconds)}`;
  };
  const cell = (text, className) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  };
  const fillTable = (id, rows, columns) => {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = cell("none", "empty");
      td.colSpan = columns;
      tr.append(td);
      body.append(tr);
    }
    for (const cells of rows) {
      const tr = document.createElement("tr");
      tr.append(...cells);
      body.append(tr);
    }
  };

  const charts = new Map();
  const width = (el) => Math.max(el.clientWidth, 280);

  // Stacked bars: series k holds the sum of statuses 0..k and is drawn over the taller ones; the legend
  // shows each status's own count.
  function statusChart(data) {
    const el = $("chart-status");
    const order = [...STATUSES].reverse();
    const cumulative = STATUSES.map((_, k) =>
      data.buckets.map((_, i) => STATUSES.slice(0, k + 1).reduce((sum, s) => sum + data.statuses[s][i], 0)),
    );
    const bars = uPlot.paths.bars({ size: [0.8, 60], align: 0 });
    const series = order.map((status) => ({
      label: status,
      fill: COLORS[status],
      stroke: COLORS[status],
      width: 0,
      paths: bars,
      points: { show: false },
      value: (_u, _v, _s, i) => (i === null ? "–" : count(data.statuses[status][i])),
    }));
    const rows = [data.buckets, ...order.map((status) => cumulative[STATUSES.indexOf(status)])];
    draw("status", el, { height: 240, series: [{}, ...series], axes: [{}, { label: "messages" }] }, rows);
  }

  function latencyChart(target, data) {
    const el = $(`chart-latency-${target}`);
    const series = PERCENTILES.map(([p, color]) => ({
      label: p,
      stroke: color,
      width: 2,
      spanGaps: true,
      value: (_u, v) => duration(v),
    }));
    const rows = [data.buckets, ...PERCENTILES.map(([p]) => data.latency[target][p])];
    draw(
      `latency-${target}`,
      el,
      { height: 180, series: [{}, ...series], axes: [{}, { values: (_u, ticks) => ticks.map(duration), size: 76 }] },
      rows,
    );
  }

  function draw(name, el, options, rows) {
    const existing = charts.get(name);
    if (existing && existing.data[0].length === rows[0].length && existing.data[0][0] === rows[0][0]) {
      existing.setData(rows);
    } else {
      existing?.destroy();
      charts.set(name, new uPlot({ width: width(el), ...options, scales: { x: { time: true } } }, rows, el));
    }
    const marks = rows.slice(1).reduce((n, row) => n + row.filter((v) => v !== null && v !== 0).length, 0);
    el.dataset.marks = String(marks);
  }

  function render(data) {
    readAtMs = new Date(data.readAt).getTime();
    $("total-all").textContent = count(data.totals.all);
    for (const status of STATUSES) $(`total-${status}`).textContent = count(data.totals[status]);
    $("bucket").textContent = data.bucketSeconds === 3600 ? "hour" : `${data.bucketSeconds / 60} minutes`;
    for (const target of TARGETS) {
      for (const [p] of PERCENTILES) $(`latency-${target}-${p}`).textContent = duration(data.latencyOverall[target][p]);
    }
    statusChart(data);
    for (const target of TARGETS) latencyChart(target, data);
    fillTeams(data.teams);
    renderCallbacks(data.callbacks);
    renderFunnel(data.verifications);

    fillTable(
      "failures",
      data.failures.map((f) => [
        cell(f.code ?? "–"),
        cell(f.message ?? "–"),
        cell(count(f.messages), "num"),
        cell(f.sampleUuid, "uuid"),
      ]),
      4,
    );
    $("stuck-after").textContent = duration(data.stuck.afterSeconds);
    $("stuck-count").textContent = count(data.stuck.messages);
    $("stuck-checked").textContent = count(data.stuck.checked);
    $("stuck-checks").textContent = count(data.stuck.checks);
    fillTable(
      "stuck",
      data.stuck.oldest.map((m) => [
        cell(m.uuid, "uuid"),
        cell(m.to),
        cell(m.status),
        cell(duration(m.inStatusSeconds), "num"),
        cell(String(m.checkCount), "num"),
        cell(relative(m.lastCheckedAt)),
        cell(relative(m.nextCheckAt)),
      ]),
      7,
    );
    const written = (byStatus) =>
      Object.entries(byStatus)
        .map(([status, n]) => `${status} ${count(n)}`)
        .join(", ") || "none";
    $("background-reconcile").textContent = written(data.background.reconcile);
    $("background-expiry").textContent = written(data.background.expiry);
    $("buffered-count").textContent = count(data.background.buffered.events);
    $("buffered-oldest").textContent = data.background.buffered.oldestReceivedAt
      ? `(oldest since ${time(data.background.buffered.oldestReceivedAt)} UTC)`
      : "";
    $("read-at").textContent = `${time(data.readAt)} UTC`;
    $("read-at").dateTime = data.readAt;
    document.body.dataset.readAt = data.readAt;
  }

  function renderCallbacks(callbacks) {
    $("callbacks-pending").textContent = count(callbacks.pending);
    $("callbacks-oldest").textContent = duration(callbacks.oldestPendingSeconds);
    $("callbacks-failing").textContent = count(callbacks.failingEndpoints);
    $("callbacks-failing").classList.toggle("bad", callbacks.failingEndpoints > 0);
    $("callbacks-endpoints").textContent = count(callbacks.endpoints);
    $("callbacks-delivered").textContent = count(callbacks.window.delivered);
    $("callbacks-failed").textContent = count(callbacks.window.failed);
    const state = (e) => {
      if (!e.enabled) return `disabled${e.disabledReason ? `: ${e.disabledReason}` : ""}`;
      if (e.failingSince) return `failing since ${time(e.failingSince)} UTC`;
      return "ok";
    };
    fillTable(
      "callback-endpoints",
      callbacks.attention.map((e) => [
        cell(e.id, "uuid"),
        cell(e.team),
        cell(e.url),
        cell(state(e), e.enabled && !e.failingSince ? "" : "bad"),
        cell(count(e.pending), "num"),
        cell(relative(e.oldestPendingAt)),
      ]),
      6,
    );
  }

  // Bars as wide as each step's share of the verifications started (set through the CSSOM, which the CSP allows).
  function renderFunnel(funnel) {
    for (const step of ["started", "delivered", "read", "approved"]) {
      $(`funnel-${step}`).textContent = count(funnel[step]);
      const share = funnel.started === 0 ? 0 : funnel[step] / funnel.started;
      $(`funnel-${step}-bar`).style.width = `${(share * 100).toFixed(1)}%`;
    }
    $("funnel").dataset.marks = String(["started", "delivered", "read", "approved"].filter((s) => funnel[s]).length);
    $("funnel-expired").textContent = count(funnel.expired);
    $("funnel-max-attempts").textContent = count(funnel.maxAttemptsReached);
    $("funnel-canceled").textContent = count(funnel.canceled);
    $("funnel-pending").textContent = count(funnel.pending);
    $("funnel-median").textContent = duration(funnel.medianSecondsToApproval);
  }

  let timer;
  let latest = 0; // only the newest read is drawn: one still on its way when the window changes is dropped
  async function refresh() {
    clearTimeout(timer);
    const mine = ++latest;
    try {
      const query = new URLSearchParams({ window: windowSelect.value, team });
      const res = await fetch(`/ops/api/overview?${query}`, {
        headers: { accept: "application/json" },
      });
      if (res.status === 401) return location.reload(); // the session ended: back to the sign-in form
      if (!res.ok) throw new Error(`the data could not be read (${res.status})`);
      const data = await res.json();
      if (mine !== latest) return;
      render(data);
      $("error").hidden = true;
    } catch (error) {
      if (mine !== latest) return;
      $("error").textContent = `${error.message}; showing the last data read`;
      $("error").hidden = false;
    }
    timer = setTimeout(refresh, refreshSeconds * 1000);
  }

  // The choices live in the address, so a reload or a shared link shows the same view.
  function choose() {
    team = teamSelect.value;
    const url = new URL(location.href);
    url.searchParams.set("window", windowSelect.value);
    if (team) url.searchParams.set("team", team);
    else url.searchParams.delete("team");
    history.replaceState(null, "", url);
    refresh();
  }
  windowSelect.addEventListener("change", choose);
  teamSelect.addEventListener("change", choose);
  fillTeams([]);
  let resizing;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      for (const [name, chart] of charts) {
        const el = $(`chart-${name}`);
        chart.setSize({ width: width(el), height: chart.height });
      }
    }, 150);
  });
  refresh();
})();
