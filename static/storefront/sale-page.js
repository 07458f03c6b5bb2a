// The product page: live countdown, live stock and the Buy button; for a queue-mode sale,
// the waiting room (waiting-room.js) in front of Buy.
//
// Time: the page keeps the offset between the server's clock and its own (from `hello`,
// or from a poll while the socket is down) and judges the start and the end by the
// corrected clock, so the button enables at the start without a reload, socket or not:
// it does not wait for `sale_started`, which only confirms (a ws process fanning out to
// thousands of sockets, or one that is down, must not delay anyone's Buy).
import { SaleFeed } from "./live-feed.js";
import { showLocalTimes } from "./local-time.js";
import { ChallengeSolver, WinState, purchase } from "./purchase.js";
import { WaitingRoom } from "./waiting-room.js";

const TICK_MS = 200;
// A countdown message from the server is shown as is for this long; after that (socket
// gone) the page counts down by itself.
const SERVER_COUNTDOWN_FRESH_MS = 1500;

function csrfToken(fallback) {
  const cookie = document.cookie.split("; ").find((pair) => pair.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : fallback;
}

export function formatCountdown(totalSeconds) {
  const seconds = Math.max(0, totalSeconds);
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  const pad = (value) => String(value).padStart(2, "0");
  const clock = hours || days ? `${pad(hours)}:${pad(minutes)}:${pad(rest)}` : `${pad(minutes)}:${pad(rest)}`;
  return days ? `${days} d ${clock}` : clock;
}

class SalePage {
  constructor(root, config) {
    this.root = root;
    this.config = config;
    this.startsAt = Date.parse(config.starts_at);
    this.endsAt = Date.parse(config.ends_at);
    this.remaining = config.remaining_stock;
    this.offsetMs = Date.parse(config.server_time) - config.rendered_at_local;
    // What the server said last, which wins over the local clock for the phase.
    this.serverStatus = config.status;
    this.serverCountdown = null;
    this.busy = false;
    this.startTimer = null;
    this.startTimerAt = null;
    this.cooldownUntil = 0;
    this.result = null;
    this.solver = new ChallengeSolver();
    this.win = new WinState({
      saleId: config.sale_id,
      shopper: config.shopper,
      orderId: config.owned_order_id,
      orderUrl: config.order_url,
      onChange: () => this.render(),
    });
    // A queue-mode sale's page holds the waiting room; `hello` says when an operator switches.
    this.queued = config.admission === "queue";
    this.lastPhase = null;
    this.everLive = false;
    this.el = {
      countdown: root.querySelector("[data-countdown]"),
      countdownBlock: root.querySelector("[data-countdown-block]"),
      stock: root.querySelector("[data-stock]"),
      status: root.querySelector("[data-status]"),
      button: root.querySelector("[data-buy]"),
      buyHint: root.querySelector("[data-buy-hint]"),
      result: root.querySelector("[data-result]"),
      connection: root.querySelector("[data-connection]"),
      ownedHint: root.querySelector("[data-owned-hint]"),
      queue: root.querySelector("[data-queue]"),
    };
    this.room = this.el.queue ? new WaitingRoom({ root: this.el.queue, config, page: this }) : null;
  }

  csrf() {
    return csrfToken(this.config.csrf_token);
  }

  /** The shop asked to wait: Buy and Join wait with the shopper. */
  coolDown(seconds) {
    this.cooldownUntil = Date.now() + seconds * 1000;
  }

  coolingDown() {
    return Date.now() < this.cooldownUntil;
  }

  start() {
    if (this.el.button) this.el.button.addEventListener("click", () => this.buy());
    this.feed = new SaleFeed({
      socketUrl: this.config.socket_url,
      pollUrl: this.config.sale_api_url,
      onConnection: (state) => {
        // Back after a drop: the line may have moved on without this page.
        if (state === "live" && this.everLive && this.queued) this.room?.readPlace();
        if (state === "live") this.everLive = true;
        this.showConnection(state);
      },
      on: {
        hello: (message) => {
          // A queue-mode sale's hello carries its line; one without it admits directly.
          this.admissionIs(message.queue ? "queue" : "direct");
          if (message.queue) this.room?.heardLine(message.queue);
          this.snapshot(message, Date.now());
        },
        snapshot: (sale, localAt) => {
          this.admissionIs(sale.admission);
          this.snapshot(sale, localAt);
          // The socket is down: the place is read as often as the sale is polled.
          if (this.queued && this.room?.pass) this.room.readPlace();
        },
        queue: (message) => {
          if (this.queued) this.room?.heardLine(message);
        },
        countdown: (message) => {
          this.serverCountdown = { seconds: message.seconds_remaining, at: Date.now() };
          this.render();
        },
        sale_started: () => this.serverSays(this.remaining > 0 ? "live" : "sold_out"),
        stock: (message) => {
          this.remaining = message.remaining_stock;
          if (this.remaining > 0 && this.serverStatus === "sold_out") this.serverStatus = "live";
          this.render();
        },
        sold_out: () => this.soldOut(),
        sale_ended: () => this.serverSays("ended"),
      },
    });
    this.feed.start();
    setInterval(() => this.render(), TICK_MS);
    if (this.queued) this.room?.readPlace();
    this.render();
  }

  /** "direct" or "queue": an operator may switch a sale while its page is open. */
  admissionIs(admission) {
    const queued = admission === "queue";
    if (queued === this.queued) return;
    this.queued = queued;
    // The shopper may hold a place already (joined in another tab).
    if (queued) this.room?.readPlace();
    this.render();
  }

  now() {
    return Date.now() + this.offsetMs;
  }

  snapshot(sale, localAt) {
    this.offsetMs = Date.parse(sale.server_time) - localAt;
    if (Date.parse(sale.starts_at) !== this.startsAt) this.showStart(sale.starts_at);
    this.startsAt = Date.parse(sale.starts_at);
    this.endsAt = Date.parse(sale.ends_at);
    this.remaining = sale.remaining_stock;
    this.serverStatus = sale.status;
    this.serverCountdown = null;
    this.render();
  }

  // The operator moved the start: the "at ..." line says the new one, on both clocks.
  showStart(startsAt) {
    const element = this.root.querySelector("[data-starts-at]");
    if (!element) return;
    element.dateTime = new Date(startsAt).toISOString();
    showLocalTimes(element.parentElement);
  }

  soldOut() {
    this.remaining = 0;
    this.serverSays("sold_out");
  }

  serverSays(status) {
    this.serverStatus = status;
    this.serverCountdown = null;
    this.render();
  }

  phase() {
    const now = this.now();
    if (this.serverStatus === "ended" || now >= this.endsAt) return "ended";
    const started = now >= this.startsAt || this.serverStatus === "live" || this.serverStatus === "sold_out";
    if (!started) return "scheduled";
    return this.remaining > 0 ? "live" : "sold_out";
  }

  secondsToStart() {
    const fresh = this.serverCountdown && Date.now() - this.serverCountdown.at < SERVER_COUNTDOWN_FRESH_MS;
    if (fresh) return this.serverCountdown.seconds;
    return Math.ceil((this.startsAt - this.now()) / 1000);
  }

  // A render exactly at the start by the corrected clock, not up to a tick later.
  armStart() {
    if (this.startTimerAt === this.startsAt) return;
    if (this.startTimer !== null) clearTimeout(this.startTimer);
    this.startTimerAt = this.startsAt;
    const wait = this.startsAt - this.now();
    // Timers drift over long waits; the tick re-arms it as the start comes near.
    if (wait > 60000) {
      this.startTimerAt = null;
      return;
    }
    this.startTimer = setTimeout(() => {
      this.startTimer = null;
      this.startTimerAt = null;
      this.render();
    }, Math.max(0, wait + 1));
  }

  render() {
    const phase = this.phase();
    if (phase === "scheduled") this.armStart();
    if (this.lastPhase === "scheduled" && phase === "live" && this.queued) this.room?.saleStarted();
    this.lastPhase = phase;
    this.root.dataset.state = phase;
    this.el.stock.textContent = String(Math.max(0, this.remaining));
    if (phase === "scheduled") {
      this.el.countdownBlock.hidden = false;
      this.el.countdown.textContent = formatCountdown(this.secondsToStart());
    } else {
      this.el.countdownBlock.hidden = true;
    }
    const words = {
      scheduled: "Opens soon",
      live: "On sale now",
      sold_out: "Sold out",
      ended: "Sale ended",
    };
    if (this.el.status.textContent !== words[phase]) this.el.status.textContent = words[phase];
    if (this.el.queue) this.el.queue.hidden = !this.queued;
    if (this.queued) this.room?.render(phase);
    this.renderHint(phase);
    this.renderButton(phase);
  }

  renderHint(phase) {
    const hint = this.el.buyHint;
    if (!hint) return;
    const queueState = this.queued ? this.room?.state(phase) : null;
    const text = this.queued
      ? "The button turns on by itself when your turn comes."
      : "The button turns on by itself when the sale opens.";
    if (hint.textContent !== text) hint.textContent = text;
    hint.hidden = this.queued ? !["pre_queue", "drawing", "waiting"].includes(queueState) : phase !== "scheduled";
  }

  renderButton(phase) {
    const button = this.el.button;
    if (!button) return;
    if (this.win.render(button, this.el.ownedHint)) return;
    const coolingDown = Date.now() < this.cooldownUntil;
    let label = "Buy now";
    if (this.busy) label = "Processing...";
    // The wait is counted down on the button, outside the live region: a screen reader
    // hears the result once, not a number every second.
    else if (coolingDown && phase === "live") label = `Try again in ${Math.ceil((this.cooldownUntil - Date.now()) / 1000)} s`;
    else if (phase === "sold_out") label = "Sold out";
    else if (phase === "ended") label = "Sale ended";
    // In a queue-mode sale, Buy is the shopper's once they hold a place, and on at their turn.
    const turn = !this.queued || (this.room !== null && this.room.admitted(phase));
    button.hidden = this.queued && !(this.room?.holdsPlace() || phase === "sold_out" || phase === "ended");
    button.disabled = this.busy || phase !== "live" || coolingDown || !turn;
    button.setAttribute("aria-busy", String(this.busy));
    if (button.textContent !== label) button.textContent = label;
    if (this.result?.kind === "retry") this.renderRetry();
    if (this.result?.kind === "not_your_turn" && !this.coolingDown()) this.showResult(null);
  }

  async buy() {
    // Disabled at once, before any await: a double click cannot send two purchases.
    if (this.busy || this.win.orderId || this.phase() !== "live") return;
    if (this.queued && !this.room?.admitted("live")) return;
    this.busy = true;
    this.showResult(null);
    this.render();
    let outcome;
    try {
      outcome = await purchase({
        challengeUrl: this.config.challenge_url,
        purchaseUrl: this.config.purchase_url,
        csrfToken: csrfToken(this.config.csrf_token),
        powDifficulty: this.config.pow_difficulty,
        solver: this.solver,
        queuePass: this.queued ? this.room.pass : undefined,
      });
    } finally {
      this.busy = false;
    }
    if (this.queued) this.room.purchased(outcome);
    if (outcome.kind === "login") {
      window.location.assign(this.config.login_url);
      return;
    }
    if (outcome.kind === "sold_out") {
      this.remaining = 0;
      this.serverStatus = "sold_out";
    }
    if (outcome.kind === "ended") this.serverStatus = "ended";
    if (outcome.kind === "retry" || outcome.kind === "not_your_turn") this.coolDown(outcome.seconds);
    this.win.heard(outcome);
    // The waiting room's status line says a passed turn, and a stale pass is replaced quietly.
    this.showResult(outcome.kind === "pass_refused" ? null : outcome);
    this.render();
  }

  renderRetry() {
    if (Date.now() >= this.cooldownUntil) this.showResult(null);
  }

  showResult(outcome) {
    this.result = outcome;
    const box = this.el.result;
    box.replaceChildren();
    box.className = "result";
    if (!outcome) return;
    const ordersUrl = (orderId) => `${this.config.orders_url}?order=${encodeURIComponent(orderId)}`;
    const add = (tag, text, attributes = {}) => {
      const node = document.createElement(tag);
      node.textContent = text;
      for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
      box.append(node);
      return node;
    };
    const orderLine = (orderId) => {
      const line = add("p", "Order ");
      const code = document.createElement("code");
      code.dataset.orderId = orderId;
      code.textContent = orderId;
      const link = document.createElement("a");
      link.href = ordersUrl(orderId);
      link.textContent = "See your orders";
      line.append(code, ". ", link);
    };
    switch (outcome.kind) {
      case "confirmed":
        box.classList.add("result-success");
        add("strong", "Order confirmed");
        orderLine(outcome.orderId);
        break;
      case "already":
        box.classList.add("result-info");
        add("strong", "Already purchased");
        if (outcome.orderId) orderLine(outcome.orderId);
        else add("p", "You already hold this sale's one unit.");
        break;
      case "sold_out":
        box.classList.add("result-info");
        add("strong", "Sold out");
        add("p", "Every unit has been sold.");
        break;
      case "retry":
        box.classList.add("result-warning");
        add("strong", "The shop is very busy right now");
        add("p", `Buy turns back on by itself in ${outcome.seconds} s.`);
        break;
      case "not_started":
        box.classList.add("result-warning");
        add("strong", "Not open yet");
        add("p", "The sale opens in a moment; press Buy again.");
        break;
      case "ended":
        box.classList.add("result-info");
        add("strong", "Sale ended");
        break;
      case "not_your_turn":
        box.classList.add("result-warning");
        add("strong", "Not your turn yet");
        add("p", "The line has not reached your place; Buy turns on again in a moment.");
        break;
      case "not_open":
        box.classList.add("result-warning");
        add("strong", "The line is not open yet");
        add("p", `It opens in ${outcome.seconds} s; press Join again then.`);
        break;
      case "offline":
        box.classList.add("result-warning");
        add("strong", "No connection");
        add("p", "Check your connection and press Buy again.");
        break;
      default:
        box.classList.add("result-warning");
        add("strong", "Not bought");
        add("p", outcome.detail);
    }
  }

  showConnection(state) {
    const words = {
      live: "Live updates on",
      reconnecting: "Reconnecting... (updating every few seconds meanwhile)",
      polling: "Updating every few seconds",
    };
    this.el.connection.textContent = words[state] ?? "";
    this.el.connection.dataset.connection = state;
  }
}

const root = document.querySelector("[data-sale-page]");
if (root) {
  const config = JSON.parse(document.getElementById("sale-config").textContent);
  config.rendered_at_local = Date.now();
  new SalePage(root, config).start();
}
