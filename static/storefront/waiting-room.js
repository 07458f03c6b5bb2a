// The waiting room on the product page of a queue-mode sale (docs/design.md, "The waiting
// room"): the shopper's place in the line, how many are ahead, a progress bar and the wait.
//
// The page learns its own place from the queue API (when it joins, on load, after the
// socket reconnects, and every few seconds while the socket is down) and the line from the
// socket's `queue` messages, which are the same for every page: its own position is all it
// needs to work out the rest, so the server sends nothing per shopper. The pass is kept in
// sessionStorage per sale and shopper, so a reload keeps the place.
import { outcomeOf, postRetried, seconds } from "./purchase.js";

// A page that waited in the pre-queue reads its drawn place after the start; spread over this
// long, a crowd's reads do not all land in the start's first millisecond.
const START_READ_SPREAD_MS = 1500;
// How often a page whose turn may have passed asks whether it has.
const TURN_CHECK_MS = 5000;

/** Where the shopper stands: their place, and the line as last heard. Pure. */
export function standing({ place, line, sinceLineSeconds, untilStartSeconds }) {
  const served = line ? line.served : 0;
  const rate = line ? line.rate : 0;
  const toTurn = Math.max(0, place.position - served); // places to go, theirs included
  const admitted = served >= place.position;
  let eta = null; // seconds; null: the line is not moving
  if (admitted) eta = 0;
  else if (rate > 0 && untilStartSeconds > 0) eta = untilStartSeconds + toTurn / rate;
  else if (rate > 0) eta = Math.max(0, toTurn / rate - sinceLineSeconds);
  const progress = admitted ? 1 : Math.min(1, Math.max(0, 1 - toTurn / Math.max(1, place.toTurnAtJoin)));
  return { ahead: Math.max(0, toTurn - 1), admitted, eta, progress };
}

/** A wait, as the page shows it: "12 s", "3 min 05 s", "1 h 02 min". */
export function formatWait(totalSeconds) {
  const wait = Math.max(0, Math.ceil(totalSeconds));
  const pad = (value) => String(value).padStart(2, "0");
  if (wait < 60) return `${wait} s`;
  if (wait < 3600) return `${Math.floor(wait / 60)} min ${pad(wait % 60)} s`;
  return `${Math.floor(wait / 3600)} h ${pad(Math.floor((wait % 3600) / 60))} min`;
}

function rateText(rate) {
  return String(Number(rate.toFixed(rate >= 10 ? 0 : 2)));
}

/** The pass and place of one shopper in one sale's line, kept for this tab's session. */
class PlaceKeeper {
  constructor(saleId, shopper) {
    this.key = `flashsale:queue:${saleId}:${shopper}`;
  }

  load() {
    try {
      return JSON.parse(sessionStorage.getItem(this.key) ?? "null");
    } catch {
      return null;
    }
  }

  save(place) {
    try {
      sessionStorage.setItem(this.key, JSON.stringify(place));
    } catch {
      // Storage full or off: the place lasts as long as the page.
    }
  }

  clear() {
    try {
      sessionStorage.removeItem(this.key);
    } catch {
      // As above.
    }
  }
}

async function placeRead(url, pass) {
  const headers = { Accept: "application/json" };
  if (pass) headers["Queue-Pass"] = pass;
  try {
    const response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
    const body = await response.json().catch(() => null);
    return { httpStatus: response.status, body, retryAfter: response.headers.get("Retry-After") };
  } catch {
    return { httpStatus: 0, body: null, retryAfter: null };
  }
}

/** What a join answered, as the page shows it (`kind` picks the message). */
export function joinOutcome(httpStatus, body, retryAfter) {
  if ((httpStatus === 200 || httpStatus === 201) && body?.pass) return { kind: "placed", body };
  if (body?.status === "QUEUE_NOT_OPEN") return { kind: "not_open", seconds: seconds(retryAfter) };
  if (body?.status === "SALE_NOT_QUEUED") return { kind: "direct" };
  return outcomeOf(httpStatus, body, retryAfter);
}

export class WaitingRoom {
  /**
   * @param {object} options
   * @param {HTMLElement} options.root   the page's [data-queue] section
   * @param {object} options.config      the page's config
   * @param {object} options.page        the product page: its clock, its solver, its result box
   */
  constructor({ root, config, page }) {
    this.config = config;
    this.page = page;
    this.keeper = new PlaceKeeper(config.sale_id, config.shopper);
    this.lineOpensAt = Date.parse(config.line_opens_at);
    this.place = null; // {number, position, pass, status, toTurnAtJoin}
    this.line = null; // {served, rate, waiting, at}: `at` by this page's clock
    this.joining = false;
    this.bought = false;
    this.reading = null;
    this.turnCheckedAt = 0;
    this.el = {
      status: root.querySelector("[data-queue-status]"),
      place: root.querySelector("[data-queue-place]"),
      position: root.querySelector("[data-queue-position]"),
      ahead: root.querySelector("[data-queue-ahead]"),
      eta: root.querySelector("[data-queue-eta]"),
      progress: root.querySelector("[data-queue-progress]"),
      line: root.querySelector("[data-queue-line]"),
      join: root.querySelector("[data-join]"),
    };
    this.root = root;
    const kept = this.keeper.load();
    if (kept?.pass) this.place = kept;
    this.el.join.addEventListener("click", () => this.join());
  }

  get pass() {
    return this.place?.pass ?? null;
  }

  /** The shopper holds a place: the Buy button is theirs to use when their turn comes. */
  holdsPlace() {
    return this.place !== null && this.place.status !== "turn_passed";
  }

  /** Let in, and the turn not known to have passed. */
  admitted(phase) {
    return phase === "live" && this.state(phase) === "admitted";
  }

  // --- What the page hears ------------------------------------------------------------

  heardLine(message) {
    // A hello's line says when joins open: an operator may have moved it since the page loaded.
    if (message.opens_at) this.lineOpensAt = Date.parse(message.opens_at);
    this.line = {
      served: message.served,
      rate: message.rate_per_second,
      waiting: message.waiting,
      at: Date.now(),
    };
    this.checkTurn();
    this.page.render();
  }

  /** The sale opened: a place in the pre-queue is read again (a shuffled one is drawn now). */
  saleStarted() {
    if (this.place?.status !== "pre_queue") return;
    setTimeout(() => this.readPlace(), Math.random() * START_READ_SPREAD_MS);
  }

  /** A purchase with the pass was answered. */
  purchased(outcome) {
    if (outcome.kind === "confirmed" || outcome.kind === "already") this.bought = true;
    if (outcome.kind === "not_your_turn") this.readPlace();
    if (outcome.kind === "pass_refused") {
      if (outcome.reason === "expired" && this.place) {
        this.place = { ...this.place, status: "turn_passed" };
        this.keeper.save(this.place);
      } else {
        // stale: a newer place of this shopper's holds (another tab joined again); the rest:
        // this pass is no good. Either way the line knows the shopper's place, if any.
        this.forget();
        this.readPlace();
      }
    }
    this.page.render();
  }

  // --- Asking the server --------------------------------------------------------------

  /**
   * Read the shopper's place: with the pass, answered by the web process alone from its
   * model of the line; `fromTheLine`, without it, by the line's script, which moves the
   * counter to now and so tells a turn that passed while nobody called it.
   */
  readPlace({ fromTheLine = false } = {}) {
    this.reading ??= this.read(fromTheLine).finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  async read(fromTheLine) {
    let answer = await placeRead(this.config.queue_url, fromTheLine ? null : this.pass);
    if (answer.httpStatus === 403 && this.pass) {
      this.forget();
      answer = await placeRead(this.config.queue_url, null);
    }
    const status = answer.body?.status;
    if (answer.httpStatus === 200 && answer.body?.pass) this.placed(answer.body);
    else if (answer.httpStatus === 404) this.forget();
    else if (status === "SOLD_OUT") this.page.soldOut();
    else if (status === "ENDED") this.page.serverSays("ended");
    else if (status === "SALE_NOT_QUEUED") this.page.admissionIs("direct");
    this.page.render();
  }

  async join() {
    if (this.joining || !this.joinable(this.page.phase())) return;
    this.joining = true;
    this.page.showResult(null);
    this.page.render();
    let outcome;
    try {
      let body = {};
      if (this.config.pow_difficulty > 0) {
        const solved = await this.page.solver.solve(this.config.challenge_url, this.page.csrf());
        if (!solved.ok) outcome = joinOutcome(solved.httpStatus, solved.body, solved.retryAfter);
        else if (solved.difficulty > 0) body = { challenge: solved.challenge, solution: solved.solution };
      }
      if (!outcome) {
        // Joining again answers the same place, so a retried join never takes two.
        const answer = await postRetried(this.config.queue_url, {
          csrfToken: this.page.csrf(),
          payload: JSON.stringify(body),
        });
        outcome = joinOutcome(answer.httpStatus, answer.body, answer.retryAfter);
      }
    } finally {
      this.joining = false;
    }
    switch (outcome.kind) {
      case "placed":
        this.placed(outcome.body);
        break;
      case "login":
        window.location.assign(this.config.login_url);
        return;
      case "sold_out":
        this.page.soldOut();
        break;
      case "ended":
        this.page.serverSays("ended");
        break;
      case "direct":
        this.page.admissionIs("direct");
        break;
      default:
        if (outcome.seconds) this.page.coolDown(outcome.seconds);
        this.page.showResult(outcome);
    }
    this.page.render();
  }

  placed(body) {
    const kept = this.place?.pass === body.pass ? this.place : null;
    this.place = {
      number: body.number,
      position: body.position,
      pass: body.pass,
      // A turn never comes back to a number: a web process's model may say "admitted" a
      // moment after the line's script said the turn passed.
      status: kept?.status === "turn_passed" ? "turn_passed" : body.status,
      // The progress bar runs from where the shopper stood when they joined to their turn.
      toTurnAtJoin: kept?.toTurnAtJoin ?? Math.max(1, body.position - body.served),
    };
    this.keeper.save(this.place);
    // The counter never goes back: a place read from another process may be a moment behind.
    const served = Math.max(body.served, this.line?.served ?? 0);
    this.line = { served, rate: body.rate_per_second, waiting: this.line?.waiting ?? null, at: Date.now() };
  }

  forget() {
    this.place = null;
    this.keeper.clear();
  }

  /** The line may have moved a turn's length past the shopper: ask the line, every few seconds at most. */
  checkTurn() {
    const place = this.place;
    if (!place || !this.line || place.status === "turn_passed" || place.status === "pre_queue") return;
    const turnPlaces = Math.max(1, this.line.rate * this.config.turn_seconds);
    if (this.line.served - place.position < turnPlaces || Date.now() - this.turnCheckedAt < TURN_CHECK_MS) return;
    this.turnCheckedAt = Date.now();
    this.readPlace({ fromTheLine: true });
  }

  // --- What the shopper sees ----------------------------------------------------------

  joinable(phase) {
    if (phase === "sold_out" || phase === "ended" || this.holdsPlace() || this.bought) return false;
    return this.page.now() >= this.lineOpensAt && !this.page.coolingDown();
  }

  state(phase) {
    if (phase === "sold_out" || phase === "ended") return phase;
    if (this.bought) return "bought";
    if (this.joining) return "joining";
    const place = this.place;
    if (!place) return this.page.now() >= this.lineOpensAt ? "out" : "not_open";
    if (place.status === "turn_passed") return "turn_passed";
    if (phase === "scheduled") return "pre_queue";
    // Open, and the place not read since: a shuffled pre-queue's place is being drawn.
    if (place.status === "pre_queue" && this.config.shuffle_pre_queue) return "drawing";
    if (place.status === "admitted" || (this.line && this.line.served >= place.position)) return "admitted";
    return "waiting";
  }

  sentence(state) {
    const place = this.place;
    const opensAt = new Date(this.lineOpensAt).toISOString().slice(11, 19);
    switch (state) {
      case "not_open":
        return `The line opens at ${opensAt} UTC. Join it then to get your number.`;
      case "out":
        return "Join the line to get your number. Shoppers are let in by number, in order.";
      case "joining":
        return "Joining the line...";
      case "pre_queue":
        return this.config.shuffle_pre_queue
          ? `You are number ${place.number}. Everyone who joins before the opening is put in a random order ` +
              "when the sale opens."
          : `You are number ${place.number}. The line starts moving when the sale opens.`;
      case "drawing":
        return "The sale is open. Drawing your place in the line...";
      case "waiting":
        return `You are in the line, at place ${place.position}. Buy turns on when your turn comes.`;
      case "admitted":
        return "It's your turn: buy now.";
      case "turn_passed":
        return "Your turn passed. Join the line again for a new place at the back.";
      case "bought":
        return "You have this sale's unit.";
      case "sold_out":
        return "Sold out: the line has closed.";
      case "ended":
        return "The sale has ended: the line has closed.";
      default:
        return "";
    }
  }

  render(phase) {
    const state = this.state(phase);
    this.root.dataset.queueState = state;
    // Screen readers hear the status once per change, never the countdown below it.
    const sentence = this.sentence(state);
    if (this.el.status.textContent !== sentence) this.el.status.textContent = sentence;
    const showPlace = ["pre_queue", "drawing", "waiting", "admitted"].includes(state);
    this.el.place.hidden = !showPlace;
    if (showPlace) this.renderPlace(state);
    const join = this.el.join;
    join.hidden = !["not_open", "out", "joining", "turn_passed"].includes(state);
    join.disabled = state === "joining" || !this.joinable(phase);
    join.setAttribute("aria-busy", String(state === "joining"));
    let label = state === "turn_passed" ? "Join the line again" : "Join the line";
    if (state === "joining") label = "Joining...";
    if (join.textContent !== label) join.textContent = label;
  }

  renderPlace(state) {
    const place = this.place;
    const untilStartSeconds = Math.max(0, (this.page.startsAt - this.page.now()) / 1000);
    const sinceLineSeconds = this.line ? (Date.now() - this.line.at) / 1000 : 0;
    const drawn = !(this.config.shuffle_pre_queue && (state === "pre_queue" || state === "drawing"));
    const where = standing({ place, line: this.line, sinceLineSeconds, untilStartSeconds });
    const set = (node, text) => {
      if (node.textContent !== text) node.textContent = text;
    };
    let position = "drawn at the opening";
    if (drawn) position = String(place.position);
    if (drawn && place.position !== place.number) position += ` (number ${place.number})`;
    set(this.el.position, position);
    set(this.el.ahead, drawn ? String(where.ahead) : "-");
    let eta = "not moving right now";
    if (state === "admitted") eta = "now";
    else if (!drawn) eta = "-";
    else if (where.eta !== null) eta = where.eta > 0 ? `about ${formatWait(where.eta)}` : "any moment";
    set(this.el.eta, eta);
    const percent = Math.round(where.progress * 100);
    this.el.progress.value = percent;
    this.el.progress.textContent = `${percent}%`;
    const line = this.line;
    const figures = [];
    if (line) {
      figures.push(`${line.served} let in`);
      if (line.waiting !== null) figures.push(`${line.waiting} waiting`);
      figures.push(`${rateText(line.rate)} a second`);
    }
    set(this.el.line, figures.join(" · "));
  }
}
