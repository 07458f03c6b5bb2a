// The order page and the orders page: each unsettled order is followed by polling
// GET /api/orders/<id>/ with a backoff that stops, once the order is final (paid, expired,
// cancelled) or after the last step. Coming back to the tab (from the shop's checkout, say)
// or the payment window running out starts a new round. A change of state is written once
// to the page's live region, so a screen reader hears it once; the countdown to the
// payment deadline ticks outside it.

export const LABELS = {
  PENDING: "Pending payment",
  PAID: "Paid",
  EXPIRED: "Expired",
  CANCELLED: "Cancelled",
};
const FINAL = new Set(["PAID", "EXPIRED", "CANCELLED"]);
const NEWS = {
  PAID: "Paid. Thank you: the order is yours.",
  EXPIRED: "The payment window passed: this order expired and its unit went back on sale.",
  CANCELLED: "This order was cancelled.",
};

/** Milliseconds to wait before each poll of a round: 1, 2, 4, 8, 16, 30 s, then 30 s, 20 in all. */
export function backoffDelays({ firstMs = 1000, longestMs = 30000, polls = 20 } = {}) {
  const delays = [];
  for (let n = 0; n < polls; n++) delays.push(Math.min(longestMs, firstMs * 2 ** n));
  return delays;
}

export function formatLeft(totalSeconds) {
  const seconds = Math.max(0, Math.ceil(totalSeconds));
  const pad = (value) => String(value).padStart(2, "0");
  const hours = Math.floor(seconds / 3600);
  const clock = `${pad(Math.floor((seconds % 3600) / 60))}:${pad(seconds % 60)}`;
  return hours ? `${hours}:${clock}` : clock;
}

class OrderFollower {
  /** Polls `apiUrl` until the order is final; `onOrder(order)` hears each answer's order,
   * `onStop(final)` the end of a round. */
  constructor({ apiUrl, status, onOrder, onStop }) {
    this.apiUrl = apiUrl;
    this.status = status;
    this.onOrder = onOrder;
    this.onStop = onStop;
    this.timer = null;
    this.delays = [];
  }

  get final() {
    return FINAL.has(this.status);
  }

  get running() {
    return this.timer !== null;
  }

  start() {
    if (this.final) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.delays = backoffDelays();
    this.next();
  }

  next() {
    const wait = this.delays.shift();
    if (wait === undefined) {
      this.timer = null;
      this.onStop(false);
      return;
    }
    this.timer = setTimeout(() => this.poll(), wait);
  }

  async poll() {
    let order = null;
    try {
      const response = await fetch(this.apiUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) order = await response.json();
    } catch {
      // Offline or the shop away: the next step of the round tries again.
    }
    if (order) {
      this.status = order.status;
      this.onOrder(order);
    }
    if (this.final) {
      this.timer = null;
      this.onStop(true);
      return;
    }
    this.next();
  }
}

function announce(region, text) {
  if (region && text && region.textContent !== text) region.textContent = text;
}

function showStatus(badge, status) {
  if (!badge || !LABELS[status] || badge.textContent === LABELS[status]) return;
  badge.textContent = LABELS[status];
  badge.className = `badge badge-${status.toLowerCase()}`;
}

function followingNote(node, root, follower) {
  root.dataset.following = follower.running ? "on" : follower.final ? "final" : "paused";
  if (!node) return;
  node.hidden = follower.running || follower.final;
  node.textContent = "Updates paused; reload the page to check again.";
}

function orderPage(root, config) {
  const badge = root.querySelector("[data-order-badge]");
  const region = root.querySelector("[data-order-announce]");
  const note = root.querySelector("[data-order-following]");
  const countdown = root.querySelector("[data-pay-countdown]");
  const offsetMs = Date.parse(config.server_time) - Date.now();
  const payBy = config.pay_by ? Date.parse(config.pay_by) : null;
  let ticker = null;

  const settle = (status) => {
    root.dataset.orderStatus = status;
    showStatus(badge, status);
    if (status !== "PENDING") {
      for (const node of root.querySelectorAll("[data-pay-link], [data-pay-by-block]")) node.hidden = true;
      if (ticker !== null) clearInterval(ticker);
      ticker = null;
    }
    if (NEWS[status]) announce(region, NEWS[status]);
  };
  const follower = new OrderFollower({
    apiUrl: config.api_url,
    status: config.status,
    onOrder: (order) => {
      // Not in PostgreSQL until now (the answers were 404): one reload shows the order.
      if (config.status === null) window.location.reload();
      else settle(order.status);
    },
    onStop: () => followingNote(note, root, follower),
  });
  if (countdown && payBy !== null && !follower.final) {
    let expiredSeen = false;
    const tick = () => {
      const left = (payBy - (Date.now() + offsetMs)) / 1000;
      const text = formatLeft(left);
      if (countdown.textContent !== text) countdown.textContent = text;
      if (left <= 0 && !expiredSeen) {
        expiredSeen = true;
        for (const node of root.querySelectorAll("[data-pay-link]")) node.hidden = true;
        // Beat expires it within a tick or two: a new round hears it.
        follower.start();
        followingNote(note, root, follower);
      }
    };
    tick();
    ticker = setInterval(tick, 1000);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !follower.final) {
      follower.start();
      followingNote(note, root, follower);
    }
  });
  follower.start();
  followingNote(note, root, follower);
}

function ordersPage(root, config) {
  const region = root.querySelector("[data-orders-announce]");
  const note = root.querySelector("[data-order-following]");
  const followers = [];
  const noteAll = () => {
    const running = followers.some((follower) => follower.running);
    const final = followers.every((follower) => follower.final);
    root.dataset.following = running ? "on" : final ? "final" : "paused";
    if (note) {
      note.hidden = running || final;
      note.textContent = "Updates paused; reload the page to check again.";
    }
  };
  for (const item of config.following) {
    const awaited = item.status === null;
    const follower = new OrderFollower({
      apiUrl: item.api_url,
      status: item.status,
      onOrder: (order) => {
        if (awaited) {
          // Not in PostgreSQL until now (the answers were 404): one reload shows its row.
          window.location.replace(window.location.pathname);
          return;
        }
        const row = root.querySelector(`tr[data-order-id="${CSS.escape(item.order_id)}"]`);
        if (!row) return;
        showStatus(row.querySelector("[data-order-badge]"), order.status);
        if (order.status !== "PENDING") row.querySelector("[data-pay-link]")?.remove();
        if (NEWS[order.status]) announce(region, `Order ${item.order_id.slice(0, 8)}: ${NEWS[order.status]}`);
      },
      onStop: noteAll,
    });
    followers.push(follower);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    for (const follower of followers) if (!follower.final && !follower.running) follower.start();
    noteAll();
  });
  for (const follower of followers) follower.start();
  noteAll();
}

const single = document.querySelector("[data-order-page]");
const list = document.getElementById("orders-config");
if (single) {
  orderPage(single, JSON.parse(document.getElementById("order-config").textContent));
} else if (list) {
  ordersPage(document.querySelector("main"), JSON.parse(list.textContent));
}
