// Stacked bar chart of count buckets in plain SVG. A bucket whose count is null (no analysed
// video) is drawn as a hatched gap over the full height, never as a zero bar.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#2271b1", "#d63638", "#00a32a", "#dba617", "#8c5fc7", "#3c434a"];

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// Buckets of the API (one per series and start) -> one column per start.
function columnsOf(buckets) {
  const byStart = new Map();
  for (const b of buckets) {
    if (!byStart.has(b.start)) {
      byStart.set(b.start, { start: b.start, end: b.end, covered_s: b.covered_s, counts: {} });
    }
    byStart.get(b.start).counts[b.line_id + ":" + b.direction_name] = b.count;
  }
  const columns = [...byStart.values()].sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  for (const c of columns) {
    const known = Object.values(c.counts).filter((n) => n !== null);
    c.total = known.length ? known.reduce((s, n) => s + n, 0) : null;
  }
  return columns;
}

function niceStep(max) {
  const raw = max / 5;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return Math.max(1, m * mag);
  return Math.max(1, 10 * mag);
}

function label(iso, granularity) {
  // Local wall time as the API wrote it (ISO 8601 with the camera's offset).
  return granularity === "hour" ? iso.slice(11, 13) + "h" : iso.slice(5, 10);
}

function drawCounts(container, buckets, granularity) {
  const columns = columnsOf(buckets);
  const series = [...new Set(buckets.map((b) => b.line_id + ":" + b.direction_name))].sort();
  const W = 1000, H = 330, left = 48, right = 12, top = 16, bottom = 54;
  const plotW = W - left - right, plotH = H - top - bottom;
  const maxTotal = Math.max(1, ...columns.map((c) => c.total || 0));
  const step = niceStep(maxTotal);
  const yMax = Math.ceil(maxTotal / step) * step;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const slot = plotW / Math.max(1, columns.length);
  const barW = Math.max(1, slot * 0.8);
  const gaps = columns.filter((c) => c.total === null).length;
  const total = columns.reduce((s, c) => s + (c.total || 0), 0);

  const svg = svgEl("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", id: "counts-chart",
    "data-buckets": columns.length, "data-gaps": gaps, "data-total": total,
  });
  svg.appendChild(svgEl("title", {}, `${total} crossings, ${gaps} of ${columns.length} buckets without coverage`));
  const defs = svgEl("defs");
  const pattern = svgEl("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  pattern.appendChild(svgEl("rect", { width: 3, height: 6, fill: "#dcdcde" }));
  defs.appendChild(pattern);
  svg.appendChild(defs);

  for (let v = 0; v <= yMax; v += step) {
    svg.appendChild(svgEl("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), stroke: "#f0f0f1" }));
    svg.appendChild(svgEl("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#646970" }, v));
  }
  const every = Math.ceil(columns.length / 24);
  columns.forEach((c, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const share = c.covered_s / ((Date.parse(c.end) - Date.parse(c.start)) / 1000);
    if (c.total === null) {
      const gap = svgEl("rect", { class: "gap", x, y: top, width: barW, height: plotH, fill: "url(#hatch)", "data-start": c.start });
      gap.appendChild(svgEl("title", {}, `${c.start}: no analysed video`));
      svg.appendChild(gap);
    } else {
      let base = 0;
      series.forEach((s, k) => {
        const n = c.counts[s];
        if (n === null || n === undefined) return;
        const bar = svgEl("rect", {
          class: "bar", x, y: y(base + n), width: barW, height: Math.max(0, y(base) - y(base + n)),
          fill: COLOURS[k % COLOURS.length], "data-start": c.start, "data-series": s, "data-count": n,
        });
        bar.appendChild(svgEl("title", {}, `${c.start} ${s}: ${n} (covered ${(share * 100).toFixed(1)}%)`));
        svg.appendChild(bar);
        base += n;
      });
      // A covered bucket always shows a baseline tick, so a true 0 differs from a gap.
      svg.appendChild(svgEl("rect", { class: "covered", x, y: y(0) - 2, width: barW, height: 2, fill: "#3c434a" }));
    }
    // Under the axis: how much of the bucket analysed video covers (grey: none).
    svg.appendChild(svgEl("rect", { x, y: y(0) + 4, width: barW, height: 5, fill: "#dcdcde" }));
    const strip = svgEl("rect", {
      class: "coverage", x, y: y(0) + 4, width: share > 0 ? Math.max(1.5, barW * share) : 0, height: 5,
      fill: "#3c434a", "data-share": share.toFixed(4),
    });
    strip.appendChild(svgEl("title", {}, `${c.start}: ${(share * 100).toFixed(1)}% covered`));
    svg.appendChild(strip);
    if (i % every === 0) {
      svg.appendChild(svgEl("text", { x: x + barW / 2, y: H - bottom + 24, "text-anchor": "middle", "font-size": 11, fill: "#3c434a" }, label(c.start, granularity)));
    }
  });
  svg.appendChild(svgEl("line", { x1: left, x2: W - right, y1: y(0), y2: y(0), stroke: "#8c8f94" }));
  series.forEach((s, k) => {
    const lx = left + k * 200;
    svg.appendChild(svgEl("rect", { x: lx, y: H - 18, width: 12, height: 12, fill: COLOURS[k % COLOURS.length] }));
    svg.appendChild(svgEl("text", { x: lx + 16, y: H - 8, "font-size": 12, fill: "#1d2327" }, s));
  });
  container.replaceChildren(svg);
  const covered = columns.reduce((s, c) => s + c.covered_s, 0);
  return { buckets: columns.length, gaps, total, covered };
}
