// Draws the view the server pushes (server-sent events): no polling, no
// framework, nothing fetched from elsewhere. The server decides what to
// show; this only turns its JSON into DOM and SVG.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const ENDED_BADLY = ["Failed", "Errored", "Aborted"];
const NODE_W = 200, NODE_H = 74, COL_W = 260, ROW_H = 100, PAD = 16;

// When each promotion phase and step status was first drawn (ms since the
// epoch), so tests and curious people can see how quickly changes arrive.
window.barge = { updates: 0, seen: {} };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function badge(value) {
  return el("span", { class: "badge", "data-value": value }, value);
}

function freightText(f) {
  const name = f.alias || f.name.slice(0, 12);
  return f.artifacts.length ? `${name} (${f.artifacts.join(", ")})` : name;
}

function place(p) {
  return { x: PAD + p.column * COL_W, y: PAD + p.row * ROW_H };
}

function graph(project) {
  const nodes = new Map();
  for (const w of project.warehouses) nodes.set("Warehouse/" + w.name, place(w.place));
  for (const s of project.stages) nodes.set("Stage/" + s.name, place(s.place));
  let width = 0, height = 0;
  for (const p of nodes.values()) {
    width = Math.max(width, p.x + NODE_W + PAD);
    height = Math.max(height, p.y + NODE_H + PAD);
  }
  const root = svg("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}` });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a6" }));
  defs.append(marker);
  root.append(defs);
  for (const e of project.edges) {
    const a = nodes.get(e.from_kind + "/" + e.from), b = nodes.get("Stage/" + e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    root.append(svg("path", {
      class: "edge", "data-from": e.from, "data-to": e.to, "marker-end": "url(#arrow)",
      d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
    }));
  }
  for (const w of project.warehouses) {
    const p = place(w.place);
    const g = svg("g", {
      class: "node warehouse" + (w.exists ? "" : " missing") + (w.problem ? " failing" : ""),
      "data-warehouse": w.name, transform: `translate(${p.x},${p.y})`,
    });
    // Why, on hover (and in its card below).
    if (w.problem) g.append(svg("title", {}, w.problem));
    g.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 8 }));
    g.append(svg("text", { class: "title", x: 10, y: 20 }, "▣ " + w.name));
    g.append(svg("text", { x: 10, y: 40 }, w.exists ? `${w.freight_count} Freight` : "Warehouse not found"));
    if (w.problem) g.append(svg("text", { class: "failed problem", x: 10, y: 58 }, "✗ Not Ready"));
    else g.append(svg("text", { x: 10, y: 58 }, (w.subscriptions[0] || "").slice(0, 30)));
    root.append(g);
  }
  for (const s of project.stages) {
    const p = place(s.place);
    const running = s.promotions.find((x) => x.name === s.promoting);
    const g = svg("g", { class: "node stage", "data-stage": s.name, "data-health": s.health, transform: `translate(${p.x},${p.y})` });
    g.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 8 }));
    g.append(svg("text", { class: "title", x: 10, y: 20 }, s.name));
    g.append(svg("text", { class: "health", x: NODE_W - 10, y: 20, "text-anchor": "end" }, s.health));
    const current = s.current.map(freightText).join(", ") || "no Freight yet";
    g.append(svg("text", { class: "freight", x: 10, y: 40 }, current.slice(0, 32)));
    if (running) g.append(svg("text", { class: "promoting", x: 10, y: 60 }, `⟳ ${running.name}: ${running.phase}`.slice(0, 32)));
    const latest = s.promotions[0];
    if (!running && latest && ENDED_BADLY.includes(latest.phase)) {
      g.append(svg("text", { class: "failed", x: 10, y: 60 }, `✗ ${latest.name}: ${latest.phase}`.slice(0, 32)));
    }
    root.append(g);
  }
  return root;
}

function steps(promotion) {
  if (!promotion.steps.length) return null;
  // Steps copied from a Stage's last Promotion come without their kind.
  const uses = promotion.steps.some((s) => s.uses);
  return el("table", { class: "steps" },
    el("tr", {}, el("th", {}, "step"), uses ? el("th", {}, "uses") : null, el("th", {}, "status"), el("th", {}, "details")),
    promotion.steps.map((s) => el("tr", { "data-step": s.alias, "data-status": s.status },
      el("td", {}, s.alias),
      uses ? el("td", {}, s.uses) : null,
      el("td", {}, badge(s.status)),
      el("td", {},
        s.message ? el("div", {}, s.message) : null,
        s.waiting_on.map((w) => el("div", { class: "waiting" },
          `waiting on ${w.target}` + (w.message && w.message !== s.message ? `: ${w.message}` : "")
            + (w.since ? ` (since ${w.since})` : ""))),
      ))));
}

function card(stage) {
  return el("div", { class: "card", "data-stage": stage.name },
    el("h3", {}, stage.name, " ", badge(stage.health)),
    stage.issues.length ? el("ul", { class: "issues" }, stage.issues.map((i) => el("li", { class: "message" }, i))) : null,
    el("div", { class: "current" }, el("span", { class: "muted" }, "Freight: "),
      stage.current.map(freightText).join(", ") || "none yet"),
    stage.history.length ? el("div", { class: "history" }, el("span", { class: "muted" }, "Before: "),
      el("ul", {}, stage.history.map((h) => el("li", {}, h.map(freightText).join(", "))))) : null,
    stage.promotions.map((p) => el("div", { class: "promotion", "data-promotion": p.name, "data-phase": p.phase },
      el("div", {}, el("strong", {}, p.name), " ", badge(p.phase), " ",
        el("span", { class: "muted" }, `Freight ${p.freight.slice(0, 12)}`)),
      // A running Promotion's message repeats its step's: shown there.
      p.message && ENDED_BADLY.includes(p.phase) ? el("div", { class: "message" }, p.message) : null,
      steps(p))));
}

// A Warehouse that is not Ready gets a card too, saying why: the node has
// no room for it, and a touch screen cannot hover.
function warehouseCard(w) {
  return el("div", { class: "card warehouse", "data-warehouse": w.name },
    el("h3", {}, "▣ ", w.name, " ", badge("Not Ready")),
    el("div", { class: "message" }, w.problem));
}

function render(page) {
  const app = document.getElementById("app");
  const parts = [];
  if (!page.attached) parts.push(el("p", { class: "empty" }, "The caches are not ready yet (a controller that is not leading shows nothing)."));
  else if (!page.projects.length) parts.push(el("p", { class: "empty" }, "No Stages or Warehouses here."));
  for (const project of page.projects) {
    parts.push(el("section", { class: "project", "data-namespace": project.namespace },
      el("h2", {}, "Project ", project.namespace),
      graph(project),
      el("div", { class: "cards" },
        project.warehouses.filter((w) => w.problem).map(warehouseCard),
        project.stages.map(card))));
  }
  app.replaceChildren(...parts);
  const now = Date.now();
  for (const project of page.projects) {
    for (const stage of project.stages) {
      for (const p of stage.promotions) {
        const key = `${project.namespace}/${p.name}/${p.phase}`;
        if (!(key in window.barge.seen)) window.barge.seen[key] = now;
        for (const s of p.steps) {
          const step = `${project.namespace}/${p.name}/${s.alias}/${s.status}`;
          if (!(step in window.barge.seen)) window.barge.seen[step] = now;
        }
      }
    }
  }
  window.barge.updates += 1;
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { status.dataset.state = "live"; status.textContent = "live"; });
  source.addEventListener("error", () => { status.dataset.state = "lost"; status.textContent = "reconnecting…"; });
  source.addEventListener("view", (event) => render(JSON.parse(event.data)));
}

connect();
