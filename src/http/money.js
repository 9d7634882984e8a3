// Amounts as Stripe counts them, and the daily report drawn as SVG charts, one per currency:
// gross as bars and refunds and net as lines on one axis, failed payments (a count) as bars
// on a chart of their own.
// Loaded before dashboard.js, whose `h` it uses when a chart is drawn.
"use strict";

// Stripe's amounts are in the currency's minor unit; these currencies have none, or three.
const ZERO_DECIMAL = new Set(["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]);
const THREE_DECIMAL = new Set(["bhd", "jod", "kwd", "omr", "tnd"]);

function decimals(currency) {
  const c = (currency || "").toLowerCase();
  return ZERO_DECIMAL.has(c) ? 0 : THREE_DECIMAL.has(c) ? 3 : 2;
}

/** An amount in minor units as major units, grouped, without the currency. */
function major(amount, currency) {
  const d = decimals(currency);
  return (amount / 10 ** d).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  return major(amount, currency) + " " + (currency || "").toUpperCase();
}

// ---------- the daily report ----------

const SVG_NS = "http://www.w3.org/2000/svg";
const DAY_MS = 86400000;
const SERIES = [
  { key: "revenue", label: "Gross" },
  { key: "refunds", label: "Refunds" },
  { key: "net", label: "Net" },
];
const WIDTH = 720;
const LEFT = 80;
const RIGHT = 16;

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "testid") el.dataset.testid = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A report row's figures; rows written before refunds and disputes were counted lack them. */
function figures(row) {
  const revenue = row.revenue || 0;
  const refunds = row.refunds ?? 0;
  const disputed = row.disputed ?? 0;
  return { revenue, refunds, disputed, net: row.net ?? revenue - refunds - disputed, failed_payments: row.failed_payments || 0, payments: row.payments || 0 };
}

/** Every UTC day from `from` to `to` (YYYY-MM-DD), both included. */
function daysBetween(from, to) {
  const days = [];
  for (let t = Date.parse(from + "T00:00:00Z"); t <= Date.parse(to + "T00:00:00Z"); t += DAY_MS) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

/** Round tick values covering [min, max], zero included, about `count` steps apart. */
function ticks(min, max, count) {
  const lo = Math.min(0, min);
  const hi = Math.max(0, max, lo + 1);
  const rough = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  // Amounts in minor units and counts are whole numbers: no tick between two of them.
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough));
  const values = [];
  for (let v = Math.floor(lo / step) * step; v < hi + step; v += step) {
    values.push(v);
    if (v >= hi) break;
  }
  return values;
}

/** A chart's frame: scales over `days` and the tick values, gridlines and axis labels. */
function frame(days, values, height, label) {
  const top = 10;
  const bottom = height - 22;
  const lo = values[0];
  const hi = values[values.length - 1];
  const plot = WIDTH - LEFT - RIGHT;
  const x = (i) => LEFT + (days.length === 1 ? plot / 2 : (i * plot) / (days.length - 1));
  const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  const grid = values.map((v) => svg("g", { class: "tick" + (v === 0 ? " zero" : "") },
    svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(v), y2: y(v) }),
    svg("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" }, label(v))));
  const shown = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])];
  const axis = shown.map((i) => svg("text", { class: "day", x: x(i), y: height - 6, "text-anchor": "middle" }, days[i].slice(5)));
  return { x, y, grid, axis, bottom, step: days.length > 1 ? (x(1) - x(0)) : plot };
}

/** A bar from zero to `value` at day `i`, its title naming the day and the value. */
function bar(f, i, value, width, attrs, title) {
  const [top, bottom] = [f.y(Math.max(value, 0)), f.y(Math.min(value, 0))];
  return svg("rect", Object.assign({ class: "bar", x: f.x(i) - width / 2, y: top, width, height: bottom - top, "data-value": value }, attrs),
    svg("title", {}, title));
}

/** Gross as bars, refunds and net as lines, on one money axis. */
function moneyChart(currency, days, byDay, titleId, descId) {
  const points = days.map((d) => byDay.get(d) || figures({}));
  const all = points.flatMap((p) => SERIES.map((s) => p[s.key]));
  const f = frame(days, ticks(Math.min(...all), Math.max(...all), 4), 230, (v) => major(v, currency));
  const width = Math.max(2, Math.min(18, f.step * 0.6));
  const label = (s, i, p) => `${days[i]} ${s.label.toLowerCase()}: ${money(p[s.key], currency)}`;
  const [gross, ...lines] = SERIES;
  const bars = svg("g", { class: "series series-" + gross.key, "data-series": gross.key },
    points.map((p, i) => (byDay.has(days[i]) ? bar(f, i, p[gross.key], width, { testid: "point", "data-series": gross.key, "data-day": days[i] }, label(gross, i, p)) : null)));
  const drawn = lines.map((s) => svg("g", { class: "series series-" + s.key, "data-series": s.key },
    svg("polyline", { points: points.map((p, i) => `${f.x(i)},${f.y(p[s.key])}`).join(" ") }),
    points.map((p, i) => (byDay.has(days[i]) ? svg("circle", {
      cx: f.x(i), cy: f.y(p[s.key]), r: 3.5, testid: "point", "data-series": s.key, "data-day": days[i], "data-value": p[s.key],
    }, svg("title", {}, label(s, i, p))) : null))));
  return svg("svg", { class: "chart", viewBox: `0 0 ${WIDTH} 230`, role: "img", "aria-labelledby": `${titleId} ${descId}`, testid: "chart-money" },
    svg("title", { id: titleId }, `Gross, refunds and net per day in ${currency.toUpperCase()}`),
    svg("desc", { id: descId }, summary(currency, days, byDay)),
    f.grid, f.axis, bars, drawn);
}

function failedChart(currency, days, byDay) {
  const counts = days.map((d) => (byDay.get(d) || figures({})).failed_payments);
  const f = frame(days, ticks(0, Math.max(...counts, 1), 2), 110, String);
  const width = Math.max(2, Math.min(18, f.step * 0.6));
  const bars = counts.map((n, i) => (n > 0 ? bar(f, i, n, width, { testid: "bar", "data-day": days[i] }, `${days[i]}: ${n} failed payment${n === 1 ? "" : "s"}`) : null));
  const total = counts.reduce((a, b) => a + b, 0);
  return svg("svg", { class: "chart small", viewBox: `0 0 ${WIDTH} 110`, role: "img", testid: "chart-failed",
    "aria-label": `Failed payments per day in ${currency.toUpperCase()}: ${total} from ${days[0]} to ${days[days.length - 1]}` },
  f.grid, f.axis, svg("g", { class: "series series-failed" }, bars));
}

/** The totals over the range, in words: what the chart shows for those who cannot see it. */
function summary(currency, days, byDay) {
  const sum = (key) => [...byDay.values()].reduce((a, p) => a + p[key], 0);
  const failed = sum("failed_payments");
  return `From ${days[0]} to ${days[days.length - 1]}, ${byDay.size} day${byDay.size === 1 ? "" : "s"} with activity: ` +
    `gross ${money(sum("revenue"), currency)}, refunds ${money(sum("refunds"), currency)}, ` +
    `disputed ${money(sum("disputed"), currency)}, net ${money(sum("net"), currency)}; ${failed} failed payment${failed === 1 ? "" : "s"}.`;
}

function reportTable(currency, byDay) {
  const rows = [...byDay.entries()].map(([day, p]) => h("tr", {},
    h("td", {}, day), h("td", {}, money(p.revenue, currency)), h("td", {}, money(p.refunds, currency)),
    h("td", {}, money(p.disputed, currency)), h("td", {}, money(p.net, currency)), h("td", {}, p.payments), h("td", {}, p.failed_payments)));
  return h("table", { testid: "report-table-" + currency },
    h("thead", {}, h("tr", {}, ["Day", "Gross", "Refunds", "Disputed", "Net", "Payments", "Failed"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
}

/**
 * The daily report answer (`GET /api/v1/reports/daily`) as one figure per currency: gross,
 * refunds and net as lines, failed payments as bars on their own axis, and the days as a
 * table. `open` remembers which tables are unfolded across re-renders.
 */
function dailyCharts(report, open) {
  const days = daysBetween(report.from, report.to);
  const currencies = new Map();
  for (const row of report.days) {
    if (!currencies.has(row.currency)) currencies.set(row.currency, new Map());
    currencies.get(row.currency).set(row.day, figures(row));
  }
  if (!currencies.size) return h("p", { class: "muted", testid: "report-none" }, `No payments from ${report.from} to ${report.to}.`);
  const legend = h("ul", { class: "legend" },
    SERIES.map((s) => h("li", { class: "series-" + s.key }, s.label)),
    h("li", { class: "series-failed" }, "Failed payments (count)"));
  return h("div", { class: "charts" }, legend, [...currencies.entries()].sort().map(([currency, byDay]) =>
    h("figure", { class: "panel", testid: "chart-" + currency, "data-currency": currency },
      h("figcaption", {}, currency.toUpperCase()),
      moneyChart(currency, days, byDay, `chart-${currency}-title`, `chart-${currency}-desc`),
      failedChart(currency, days, byDay),
      h("details", { open: !!open[currency], ontoggle: (e) => { open[currency] = e.target.open; } },
        h("summary", {}, "Days as a table"), reportTable(currency, byDay)))));
}
