// The seed's stampede in the seed's own tool: many shoppers pressing Buy on one sale.
//
// Every iteration is one press: POST /api/sales/<SALE_ID>/purchase/ with a shopper's bearer
// token (and, when the line carries one, a solved challenge as the body). Each line of SHOPPERS
// is sent once, in order, over VUS connections (closed loop: a virtual user presses again as
// soon as it has its answer, as the seed's script does), or at RATE presses a second (open
// loop: arrivals on a clock, latency from when a press was due).
//
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e SALE_ID=1 -e SHOPPERS=$PWD/shoppers.json bench/k6/stampede.js
//
// SHOPPERS (an absolute path: k6 reads a relative one from this folder) is either what
// `manage.py flashsale shoppers N --json` prints, in a file named *.json (each token used in
// turn until ITERATIONS presses were made), or a request file of the benchmark's, one
// "<token>\t<body>" line per press (what bench/wrk/requests.lua sends). `python -m bench.k6`
// runs this script and prints its numbers in the benchmark's terms (docs/benchmark.md).
//
// Environment: BASE_URL (default http://127.0.0.1:8000), SALE_ID (required), SHOPPERS
// (required), VUS (default 1000), ITERATIONS (default: one press per line of a request file,
// else 100000), RATE (presses a second; open loop when set), DURATION (open loop, default 10s),
// MAX_DURATION (closed loop, default 120s), SUMMARY (a JSON file for the summary).

import http from "k6/http";
import exec from "k6/execution";
import { check } from "k6";
import { Counter } from "k6/metrics";
import { SharedArray } from "k6/data";

const BASE_URL = (__ENV.BASE_URL || "http://127.0.0.1:8000").replace(/\/+$/, "");
const SALE_ID = __ENV.SALE_ID;
const SHOPPERS = __ENV.SHOPPERS;
if (!SALE_ID || !SHOPPERS) {
  throw new Error("set SALE_ID and SHOPPERS (-e SALE_ID=1 -e SHOPPERS=shoppers.json)");
}

// [token, body] pairs, read once and shared by every virtual user.
// (open() runs in every virtual user's init; only SharedArray's callback reads the file.)
const SHOPPERS_JSON = SHOPPERS.endsWith(".json");
const PRESSES = new SharedArray("presses", function () {
  const text = open(SHOPPERS);
  if (SHOPPERS_JSON) {
    return JSON.parse(text).shoppers.map((shopper) => [shopper.token, ""]);
  }
  return text
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => {
      const tab = line.indexOf("\t");
      return tab < 0 ? [line, ""] : [line.slice(0, tab), line.slice(tab + 1)];
    });
});
if (PRESSES.length === 0) {
  throw new Error(`${SHOPPERS} holds no shopper`);
}

const VUS = parseInt(__ENV.VUS || "1000", 10);
const ITERATIONS = parseInt(__ENV.ITERATIONS || (SHOPPERS_JSON ? "100000" : String(PRESSES.length)), 10);
const RATE = parseFloat(__ENV.RATE || "0");

export const options = {
  discardResponseBodies: false,
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"],
  scenarios: {
    stampede:
      RATE > 0
        ? {
            executor: "constant-arrival-rate",
            rate: RATE,
            timeUnit: "1s",
            duration: __ENV.DURATION || "10s",
            preAllocatedVUs: VUS,
            maxVUs: VUS,
          }
        : {
            executor: "shared-iterations",
            vus: Math.min(VUS, ITERATIONS),
            iterations: ITERATIONS,
            maxDuration: __ENV.MAX_DURATION || "120s",
          },
  },
};

const URL = `${BASE_URL}/api/sales/${SALE_ID}/purchase/`;
// The answers a stampede is contracted to give: a win, sold out or already bought (409), and
// the funnel's "not now" (429). Anything else is an error.
const EXPECTED = new Set([201, 409, 429]);
const answers = {
  201: new Counter("answers_201"),
  409: new Counter("answers_409"),
  429: new Counter("answers_429"),
  other: new Counter("answers_other"),
};

export default function () {
  const [token, body] = PRESSES[exec.scenario.iterationInTest % PRESSES.length];
  const response = http.post(URL, body, {
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    tags: { name: "purchase" },
  });
  (answers[response.status] || answers.other).add(1);
  check(response, { "a contracted answer (201, 409, 429)": (r) => EXPECTED.has(r.status) });
}

export function handleSummary(data) {
  const metric = (name) => (data.metrics[name] ? data.metrics[name].values : {});
  const count = (name) => metric(name).count || 0;
  const duration = metric("http_req_duration");
  const summary = {
    url: URL,
    presses: count("http_reqs"),
    rps: metric("http_reqs").rate || 0,
    latency_ms: {
      p50: duration.med,
      p90: duration["p(90)"],
      p95: duration["p(95)"],
      p99: duration["p(99)"],
      max: duration.max,
      mean: duration.avg,
    },
    statuses: { 201: count("answers_201"), 409: count("answers_409"), 429: count("answers_429") },
    other: count("answers_other"),
    failed: count("http_req_failed") ? metric("http_req_failed").passes || 0 : 0,
    vus: VUS,
    rate: RATE,
    seconds: data.state.testRunDurationMs / 1000,
  };
  const line =
    `stampede ${URL}: ${summary.presses} presses, ${summary.rps.toFixed(0)}/s; ` +
    `p50 ${(duration.med || 0).toFixed(1)} ms, p99 ${(duration["p(99)"] || 0).toFixed(1)} ms, ` +
    `max ${(duration.max || 0).toFixed(1)} ms; 201: ${summary.statuses[201]}, 409: ${summary.statuses[409]}, ` +
    `429: ${summary.statuses[429]}, other: ${summary.other}\n`;
  const out = { stdout: line };
  if (__ENV.SUMMARY) {
    out[__ENV.SUMMARY] = JSON.stringify(summary, null, 2);
  }
  return out;
}
