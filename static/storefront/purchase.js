// One purchase as the REST contract describes it: a proof-of-work challenge solved by a Web
// Worker (or, for a queue-mode sale, the line's pass instead), then POST /purchase/ with an
// Idempotency-Key. A network failure or a 503 is retried with the same key and body: the
// server judges a key's requests one after the other and gives a win again to its retry, so
// a retry can never buy twice.

const RETRIES = 4;

export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID(); // Only on secure origins.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function seconds(retryAfter) {
  const value = Number.parseInt(retryAfter ?? "", 10);
  return Number.isFinite(value) && value > 0 ? value : 1;
}

export class ChallengeSolver {
  constructor() {
    this.worker = null;
  }

  solve(challengeUrl, csrfToken) {
    // The worker is created on first use: a visitor who never buys never loads it.
    this.worker ??= new Worker(new URL("./pow-worker.js", import.meta.url), { type: "module" });
    return new Promise((resolve) => {
      this.worker.onmessage = (event) => resolve(event.data);
      this.worker.onerror = () => resolve({ ok: false, httpStatus: -1, body: null, retryAfter: null });
      this.worker.postMessage({ challengeUrl, csrfToken });
    });
  }
}

/** What the page shows for an HTTP answer (`kind` picks the message). */
export function outcomeOf(httpStatus, body, retryAfter) {
  const status = body?.status;
  if (httpStatus === 201 && status === "SUCCESS") return { kind: "confirmed", orderId: body.order_id };
  if (status === "ALREADY_PURCHASED") return { kind: "already", orderId: body.order_id ?? null };
  if (status === "SOLD_OUT") return { kind: "sold_out" };
  if (status === "NOT_STARTED") return { kind: "not_started" };
  if (status === "ENDED") return { kind: "ended" };
  if (status === "NOT_YOUR_TURN") return { kind: "not_your_turn", seconds: seconds(retryAfter) };
  // The detail starts with the reason: missing, forged, wrong sale, wrong user, expired, stale.
  if (status === "QUEUE_PASS_INVALID") return { kind: "pass_refused", reason: String(body.detail ?? "").split(":")[0] };
  if (httpStatus === 429 || httpStatus === 503) return { kind: "retry", seconds: seconds(retryAfter) };
  if (httpStatus === 401) return { kind: "login" };
  if (httpStatus === 0) return { kind: "offline" };
  return { kind: "failed", detail: body?.detail ?? `The shop answered ${httpStatus}.` };
}

/**
 * POST `payload` (a JSON string) to `url` with the session's CSRF token; a network failure or
 * a 503 is sent again, the same bytes, a few times. Resolves to {httpStatus, body, retryAfter}
 * (httpStatus 0: offline); never rejects.
 */
export async function postRetried(url, { csrfToken, payload, headers = {} }) {
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": csrfToken,
          ...headers,
        },
        body: payload,
      });
    } catch {
      if (attempt < RETRIES) {
        await sleep(250 * 2 ** attempt);
        continue;
      }
      return { httpStatus: 0, body: null, retryAfter: null };
    }
    const body = await response.json().catch(() => null);
    const retryAfter = response.headers.get("Retry-After");
    if (response.status === 503 && attempt < RETRIES) {
      await sleep(seconds(retryAfter) * 1000);
      continue;
    }
    return { httpStatus: response.status, body, retryAfter };
  }
}

/**
 * Try to buy one unit. Resolves to an outcome (see `outcomeOf`); never rejects. A queue-mode
 * sale's purchase carries `queuePass` and no proof of work (the join asked for that).
 * @param {{challengeUrl: string, purchaseUrl: string, csrfToken: string, powDifficulty: number,
 *          solver: ChallengeSolver, queuePass?: string}} options
 */
export async function purchase({ challengeUrl, purchaseUrl, csrfToken, powDifficulty, solver, queuePass }) {
  let body = {};
  if (queuePass) {
    body = { pass: queuePass };
  } else if (powDifficulty > 0) {
    const solved = await solver.solve(challengeUrl, csrfToken);
    if (!solved.ok) return outcomeOf(solved.httpStatus, solved.body, solved.retryAfter);
    if (solved.difficulty > 0) body = { challenge: solved.challenge, solution: solved.solution };
  }
  const answer = await postRetried(purchaseUrl, {
    csrfToken,
    payload: JSON.stringify(body),
    headers: { "Idempotency-Key": idempotencyKey() },
  });
  return outcomeOf(answer.httpStatus, answer.body, answer.retryAfter);
}

/**
 * The win state of one sale for one shopper: once they hold a unit, the Buy button says
 * "You own this: order ..." and takes no click. The server renders it on every load (so it
 * holds on reload and in a tab opened later); a win in one tab reaches the shopper's other
 * open tabs of the sale over a BroadcastChannel, and a 409 ALREADY_PURCHASED (which
 * carries the order id) turns it on in a tab that missed both.
 */
export class WinState {
  constructor({ saleId, shopper, orderId, orderUrl, onChange }) {
    this.saleId = saleId;
    this.shopper = shopper;
    this.orderId = orderId ?? null;
    this.orderUrl = orderUrl;
    this.onChange = onChange;
    this.channel = null;
    if (shopper != null && typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel("flashsale-wins");
      this.channel.onmessage = (event) => {
        const win = event.data ?? {};
        if (win.saleId === this.saleId && win.shopper === this.shopper && win.orderId) this.own(win.orderId, false);
      };
    }
  }

  /** Take the outcome of a purchase; true when it means the shopper holds a unit. */
  heard(outcome) {
    const orderId = outcome?.kind === "confirmed" || outcome?.kind === "already" ? outcome.orderId : null;
    if (!orderId) return false;
    this.own(orderId, true);
    return true;
  }

  own(orderId, tellOtherTabs) {
    const changed = this.orderId !== orderId;
    this.orderId = orderId;
    if (tellOtherTabs && this.channel) {
      this.channel.postMessage({ saleId: this.saleId, shopper: this.shopper, orderId });
    }
    if (changed) this.onChange?.(orderId);
  }

  /** Show the owned state on `button` (and its hint); false while the shopper holds nothing. */
  render(button, hint) {
    if (!this.orderId || !button) return false;
    const label = `You own this: order ${this.orderId.slice(0, 8)}`;
    button.disabled = true;
    button.dataset.ownedOrder = this.orderId;
    button.classList.add("buy-button-owned");
    button.setAttribute("aria-busy", "false");
    if (button.textContent !== label) button.textContent = label;
    if (hint && hint.dataset.ownedFor !== this.orderId) {
      hint.dataset.ownedFor = this.orderId;
      const link = document.createElement("a");
      link.href = this.orderUrl.replace("00000000-0000-0000-0000-000000000000", encodeURIComponent(this.orderId));
      link.textContent = "See your order";
      hint.replaceChildren("One unit per shopper. ", link, ".");
      hint.hidden = false;
    }
    return true;
  }
}
