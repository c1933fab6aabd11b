// The embedding map: points from map.json drawn on <canvas>, one canvas per panel.
// Photos are circles, texts are triangles, colours are categories. No libraries.
(function () {
  "use strict";
  const root = document.getElementById("map");
  if (!root) return;
  const statusEl = document.getElementById("map-status");
  const legendEl = document.getElementById("map-legend");
  const panelsEl = document.getElementById("map-panels");
  const tip = document.getElementById("map-tip");
  // Tableau 10 + 4 more: distinct enough for the demo's ten categories
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b", "#17becf", "#7f7f7f"];
  const PAD = 14;
  const state = { data: null, panels: [], colour: {}, focus: null, hover: null };

  function load(attempt) {
    fetch(root.dataset.src, { headers: { Accept: "application/json" } })
      .then((r) => r.json().then((body) => ({ status: r.status, body })))
      .then(({ status, body }) => {
        if (status === 202) {
          statusEl.textContent = "Computing the t-SNE layout of " + (body.model ? body.model.name : "the model") +
            "… this happens once per catalogue version and can take a minute or two. The page updates by itself.";
          root.classList.add("computing");
          setTimeout(() => load(attempt + 1), Math.min(2000 + attempt * 500, 5000));
          return;
        }
        root.classList.remove("computing");
        if (status !== 200) {
          statusEl.textContent = "The map is not available: " + (body.error || "error " + status);
          return;
        }
        render(body);
      })
      .catch((err) => { statusEl.textContent = "Could not load the map (" + err + ")."; });
  }

  function render(data) {
    state.data = data;
    data.categories.forEach((c, i) => { state.colour[c] = PALETTE[i % PALETTE.length]; });
    const n = data.products.length;
    statusEl.textContent = (data.joint ? "One space: " : "Two spaces, side by side: ") + n + " products" +
      (data.sampled ? " (a fixed sample of " + data.total_products + ")" : "") + ", " +
      data.panels.reduce((s, p) => s + p.points.length, 0) + " points.";
    legendEl.innerHTML = "";
    data.categories.forEach((c) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.innerHTML = '<span class="swatch"></span>';
      b.querySelector(".swatch").style.background = state.colour[c];
      b.append(document.createTextNode(c));
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", () => {
        state.focus = state.focus === c ? null : c;
        legendEl.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x.textContent === state.focus)));
        drawAll();
      });
      li.append(b);
      legendEl.append(li);
    });
    const shapes = document.createElement("li");
    shapes.className = "shapes";
    shapes.innerHTML = '<span aria-hidden="true">●</span> photo <span aria-hidden="true">▲</span> text';
    legendEl.append(shapes);

    panelsEl.innerHTML = "";
    panelsEl.classList.toggle("two", data.panels.length > 1);
    state.panels = data.panels.map((panel, index) => {
      const fig = document.createElement("figure");
      fig.className = "map-panel";
      const cap = document.createElement("figcaption");
      cap.textContent = panel.title;
      const canvas = document.createElement("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", panel.title + ": t-SNE map coloured by category");
      fig.append(cap, canvas);
      panelsEl.append(fig);
      const p = { index, panel, canvas, size: 0, screen: [] };
      canvas.addEventListener("mousemove", (e) => hover(p, e));
      canvas.addEventListener("mouseleave", () => { state.hover = null; tip.hidden = true; drawAll(); });
      canvas.addEventListener("click", (e) => {
        const hit = nearest(p, e);
        if (hit) window.location.href = state.data.products[hit.p].url;
      });
      return p;
    });
    layout();
    window.addEventListener("resize", layout);
  }

  function layout() {
    const dpr = window.devicePixelRatio || 1;
    state.panels.forEach((p) => {
      const width = p.canvas.parentElement.clientWidth;
      const height = Math.min(width, 720);
      p.w = width; p.h = height;
      p.canvas.style.width = width + "px";
      p.canvas.style.height = height + "px";
      p.canvas.width = Math.round(width * dpr);
      p.canvas.height = Math.round(height * dpr);
      p.canvas.getContext("2d").setTransform(dpr, 0, 0, dpr, 0, 0);
      p.screen = p.panel.points.map((pt) => [PAD + pt.x * (width - 2 * PAD), PAD + (1 - pt.y) * (height - 2 * PAD)]);
    });
    drawAll();
  }

  function marker(ctx, kind, x, y, r) {
    ctx.beginPath();
    if (kind === "text") {
      ctx.moveTo(x, y - r * 1.2);
      ctx.lineTo(x + r * 1.1, y + r * 0.8);
      ctx.lineTo(x - r * 1.1, y + r * 0.8);
      ctx.closePath();
    } else {
      ctx.arc(x, y, r, 0, Math.PI * 2);
    }
  }

  function drawAll() {
    state.panels.forEach((p) => {
      const ctx = p.canvas.getContext("2d");
      ctx.clearRect(0, 0, p.w, p.h);
      const r = p.panel.points.length > 2000 ? 2.6 : 3.6;
      p.panel.points.forEach((pt, i) => {
        const [x, y] = p.screen[i];
        const dim = state.focus && pt.category !== state.focus;
        ctx.globalAlpha = dim ? 0.08 : 0.8;
        ctx.fillStyle = state.colour[pt.category];
        marker(ctx, pt.kind, x, y, r);
        ctx.fill();
      });
      ctx.globalAlpha = 1;
      // the hovered product: both of its points (photo and text), wherever they are
      if (state.hover !== null) {
        p.panel.points.forEach((pt, i) => {
          if (pt.p !== state.hover) return;
          const [x, y] = p.screen[i];
          marker(ctx, pt.kind, x, y, r + 3);
          ctx.fillStyle = state.colour[pt.category];
          ctx.fill();
          ctx.lineWidth = 2;
          ctx.strokeStyle = "#1c1c1e";
          ctx.stroke();
        });
      }
    });
  }

  function nearest(p, e) {
    const rect = p.canvas.getBoundingClientRect();
    const mx = e.clientX - rect.left, my = e.clientY - rect.top;
    let best = null, bestD = 64; // within 8 px
    p.panel.points.forEach((pt, i) => {
      if (state.focus && pt.category !== state.focus) return;
      const dx = p.screen[i][0] - mx, dy = p.screen[i][1] - my;
      const d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = pt; }
    });
    return best;
  }

  function hover(p, e) {
    const hit = nearest(p, e);
    p.canvas.style.cursor = hit ? "pointer" : "default";
    const product = hit ? state.data.products[hit.p] : null;
    const id = hit ? hit.p : null;
    if (id !== state.hover) { state.hover = id; drawAll(); }
    if (!product) { tip.hidden = true; return; }
    tip.innerHTML = "";
    if (product.thumb) {
      const img = document.createElement("img");
      img.src = product.thumb; img.alt = ""; img.width = 72; img.height = 72;
      tip.append(img);
    }
    const text = document.createElement("div");
    const title = document.createElement("strong");
    title.className = "tip-title";
    title.textContent = product.title;
    const meta = document.createElement("span");
    meta.className = "tip-meta";
    meta.textContent = product.category + " · " + (hit.kind === "text" ? "text" : "photo");
    text.append(title, meta);
    tip.append(text);
    tip.hidden = false;
    const box = root.getBoundingClientRect();
    let left = e.clientX - box.left + 14, top = e.clientY - box.top + 14;
    if (left + 280 > box.width) left = e.clientX - box.left - 290;
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }

  // For tests and curious readers: where a point is on screen.
  window.vitrineMap = {
    ready: () => state.data !== null,
    data: () => state.data,
    screenPoint(panel, index) {
      const p = state.panels[panel];
      const rect = p.canvas.getBoundingClientRect();
      return { x: rect.left + p.screen[index][0], y: rect.top + p.screen[index][1] };
    },
  };
  load(0);
})();
