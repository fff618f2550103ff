// xgate console: keeps the overview live from /live (server-sent events). No library: the
// charts are drawn on canvases, the feed and tiles are text.
"use strict";
(function () {
  const KEPT = 900; // samples: 15 minutes at one a second
  const samples = [];
  const byId = (id) => document.getElementById(id);
  if (!byId("online")) return;

  const fixed = (x, digits) => Number(x).toFixed(digits);
  const grouped = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u2009");

  function draw(id, series, dashed) {
    const canvas = byId(id);
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 4;
    ctx.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of series) for (const v of s) max = Math.max(max, v);
    max = max > 0 ? max * 1.1 : 1;
    ctx.fillStyle = "#5b6670";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(max >= 10 ? grouped(Math.round(max)) : fixed(max, 2), pad, 12);
    ctx.fillText("15 min ago", pad, h - pad);
    ctx.fillText("now", w - pad - ctx.measureText("now").width, h - pad);
    series.forEach((s, k) => {
      ctx.beginPath();
      ctx.setLineDash(dashed && k === 1 ? [4, 3] : []);
      ctx.strokeStyle = "#0b5cad";
      ctx.lineWidth = 1.5;
      // The newest sample at the right edge, one second a step to the left.
      s.forEach((v, i) => {
        const x = w - pad - (w - 2 * pad) * ((s.length - 1 - i) / (KEPT - 1));
        const y = h - pad - 12 - (h - 2 * pad - 26) * (v / max);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
  }

  function redraw() {
    draw("chart-online", [samples.map((s) => s.online)]);
    draw("chart-handshakes", [samples.map((s) => s.handshakes)]);
    draw("chart-gbps", [samples.map((s) => s.gbps_in), samples.map((s) => s.gbps_out)], true);
    draw("chart-drops", [samples.map((s) => s.drops)]);
  }

  function tiles(s) {
    byId("online").textContent = grouped(s.online);
    byId("handshakes").textContent = fixed(s.handshakes, 0);
    byId("gbps-in").textContent = fixed(s.gbps_in, 2);
    byId("gbps-out").textContent = fixed(s.gbps_out, 2);
    byId("drops").textContent = fixed(s.drops, 0);
  }

  function rows(tbodyId, list) {
    const body = document.querySelector("#" + tbodyId + " tbody");
    if (!body) return;
    body.replaceChildren(...list.map((cells) => {
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function detail(d) {
    rows("workers", d.workers.map((w, i) => [i, w[0], fixed(w[1], 0), fixed(w[2], 0), w[3] === null ? "\u2013" : fixed(w[3], 0) + " %"]));
    rows("drop-reasons", d.drops.map((r) => [r[0], grouped(r[1])]));
  }

  function push(s) {
    samples.push(s);
    while (samples.length > KEPT) samples.shift();
  }

  const live = new EventSource("/live");
  // The stream ends with the session (signed out, expired, token revoked): sign in again.
  live.onerror = () => {
    if (live.readyState === EventSource.CLOSED) window.location.assign("/login");
  };
  live.addEventListener("history", (e) => {
    samples.length = 0;
    for (const s of JSON.parse(e.data)) push(s);
    if (samples.length) tiles(samples[samples.length - 1]);
    redraw();
  });
  live.addEventListener("sample", (e) => {
    const m = JSON.parse(e.data);
    push(m.sample);
    tiles(m.sample);
    detail(m.detail);
    redraw();
  });
  live.addEventListener("tunnel", (e) => {
    const t = JSON.parse(e.data);
    const li = document.createElement("li");
    const when = new Date(t.at * 1000).toISOString().slice(11, 19);
    const state = document.createElement("span");
    state.className = t.state;
    state.textContent = t.state;
    li.dataset.name = t.name;
    li.dataset.state = t.state;
    li.append(when + " ", state, " " + t.name + " " + t.detail);
    const feed = byId("feed");
    feed.prepend(li);
    while (feed.children.length > 200) feed.lastChild.remove();
  });
})();
