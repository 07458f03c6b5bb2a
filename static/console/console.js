// The operator console of one sale: a point a second over the console's socket
// (/ws/admin/sales/<id>/live/), the kept points first, drawn with uPlot (vendored under
// static/vendor/uplot/, the global `uPlot`).
const config = JSON.parse(document.getElementById("console-config").textContent);
const root = document.querySelector("[data-console]");
const MAX_POINTS = 7200;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15000;
const FORBIDDEN = 4403;
const NO_SUCH_SALE = 4404;

const KINDS = [
  ["won", "won", "#1a7f37"],
  ["sold_out", "sold out", "#6e7781"],
  ["limited_bucket", "limited: bucket", "#bf8700"],
  ["limited_crowd", "limited: crowd", "#e16f24"],
  ["limited_user", "limited: user", "#a475f9"],
  ["limited_ip", "limited: ip", "#cf222e"],
  ["pow_refused", "PoW refused", "#8250df"],
  ["not_started", "not started", "#0969da"],
  ["to_redis", "reached Redis", "#24292f"],
];

const series = { t: [], stock: [], p50: [], p99: [], joined: [], served: [] };
for (const [kind] of KINDS) series[kind] = [];

function figure(name, value) {
  for (const element of root.querySelectorAll(`[data-figure="${name}"]`)) element.textContent = value;
}

function number(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

function limited(rates) {
  const reasons = ["bucket", "crowd", "user", "ip"].map((reason) => rates[`limited_${reason}`]);
  if (reasons.every((rate) => rate === null || rate === undefined)) return null;
  return reasons.reduce((sum, rate) => sum + (rate || 0), 0);
}

const STATUS = { scheduled: "Scheduled", live: "Live", sold_out: "Sold out", ended: "Ended" };

function showPoint(point) {
  const rates = point.rates || {};
  root.dataset.status = point.status;
  figure("status", STATUS[point.status] || point.status);
  figure("stock", number(point.stock));
  figure("total", number(point.total));
  figure("buyers", number(point.buyers));
  for (const kind of ["won", "sold_out", "pow_refused", "not_started", "to_redis", "arrived"]) {
    figure(kind, number(rates[kind], 1));
  }
  figure("limited", number(limited(rates), 1));
  figure(
    "limited_reasons",
    ["bucket", "crowd", "user", "ip"].map((reason) => `${reason} ${number(rates[`limited_${reason}`], 1)}`).join(" · "),
  );
  figure("p50", number(point.p50_ms, 1));
  figure("p99", number(point.p99_ms, 1));
  const orders = point.orders || {};
  figure("orders_waiting", number(orders.waiting));
  figure("orders_stored", number(orders.stored));
  figure("orders_emailed", number(orders.emailed));
  figure("sockets", number(point.sockets));
  if (point.line) {
    for (const element of root.querySelectorAll("[data-line-tile], [data-line-chart]")) element.hidden = false;
    figure("line_joined", number(point.line.joined));
    figure("line_served", number(point.line.served, 1));
    figure("line_rate", number(point.line.rate, 2));
  }
}

function add(point) {
  const rates = point.rates || {};
  series.t.push(point.t / 1000);
  series.stock.push(point.stock);
  series.p50.push(point.p50_ms);
  series.p99.push(point.p99_ms);
  series.joined.push(point.line ? point.line.joined : null);
  series.served.push(point.line ? point.line.served : null);
  for (const [kind] of KINDS) series[kind].push(rates[kind] ?? null);
  if (series.t.length > MAX_POINTS) for (const name of Object.keys(series)) series[name].shift();
}

const charts = [];

function chart(name, lines, { fill = false } = {}) {
  const target = root.querySelector(`[data-chart="${name}"]`);
  const options = {
    width: Math.max(320, target.clientWidth || 600),
    height: 200,
    tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), config.shop_zone),
    scales: { x: { time: true } },
    legend: { live: true },
    series: [{}, ...lines.map(([, label, stroke]) => ({ label, stroke, width: 2, spanGaps: false, fill: fill ? `${stroke}22` : undefined }))],
    axes: [{}, { size: 60 }],
  };
  const plot = new uPlot(options, [series.t, ...lines.map(([key]) => series[key])], target);
  charts.push({ plot, data: () => [series.t, ...lines.map(([key]) => series[key])], target });
}

function redraw() {
  for (const { plot, data } of charts) plot.setData(data());
}

function sizeCharts() {
  for (const { plot, target } of charts) plot.setSize({ width: Math.max(320, target.clientWidth), height: 200 });
}

function connection(text, state) {
  root.dataset.state = state;
  root.querySelector("[data-connection]").textContent = text;
}

let delay = RECONNECT_MIN_MS;

function connect() {
  const socket = new WebSocket(config.socket_url);
  socket.addEventListener("open", () => {
    delay = RECONNECT_MIN_MS;
    connection("Live", "live");
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "history") {
      for (const name of Object.keys(series)) series[name].length = 0;
      for (const point of message.points) add(point);
      if (message.points.length) showPoint(message.points[message.points.length - 1]);
      redraw();
    } else if (message.type === "point") {
      add(message);
      showPoint(message);
      redraw();
    } else if (message.type === "not_loaded") {
      figure("status", "Not loaded into Redis");
    }
  });
  socket.addEventListener("close", (event) => {
    if (event.code === FORBIDDEN) {
      connection("Refused: log in to the admin as staff.", "refused");
      return;
    }
    if (event.code === NO_SUCH_SALE) {
      connection("There is no such sale.", "refused");
      return;
    }
    connection(`Reconnecting in ${Math.round(delay / 1000)} s…`, "reconnecting");
    setTimeout(connect, delay * (0.75 + Math.random() * 0.5));
    delay = Math.min(RECONNECT_MAX_MS, delay * 2);
  });
}

chart("stock", [["stock", "units left", "#0969da"]], { fill: true });
chart("answers", KINDS);
chart("latency", [["p50", "p50", "#1a7f37"], ["p99", "p99", "#cf222e"]]);
chart("line", [["joined", "joined", "#0969da"], ["served", "served", "#1a7f37"]]);
window.addEventListener("resize", sizeCharts);
connect();
