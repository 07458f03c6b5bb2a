// The sale's live feed: the WebSocket of the contract (docs/design.md, "WebSocket"),
// reconnected with backoff; while it is down the page polls GET /api/sales/<id>/ instead,
// so a dropped socket costs freshness, never correctness.

const POLL_MS = 2000;
const MAX_BACKOFF_MS = 30000;
const NO_SUCH_SALE = 4404;

export class SaleFeed {
  /**
   * @param {object} options
   * @param {string} options.socketUrl  ws(s)://host/ws/sales/<id>/
   * @param {string} options.pollUrl    /api/sales/<id>/
   * @param {object} options.on         handlers by message type, plus `snapshot` for polls
   * @param {(state: string) => void} options.onConnection  "live", "reconnecting", "polling"
   */
  constructor({ socketUrl, pollUrl, on, onConnection }) {
    this.socketUrl = socketUrl;
    this.pollUrl = pollUrl;
    this.on = on;
    this.onConnection = onConnection;
    this.failures = 0;
    this.pollTimer = null;
    this.socket = null;
  }

  start() {
    this.connect();
  }

  connect() {
    let socket;
    try {
      socket = new WebSocket(this.socketUrl);
    } catch {
      this.lost(false);
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.failures = 0;
      this.stopPolling();
      this.onConnection("live");
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      const handler = this.on[message.type];
      if (handler) handler(message);
    };
    socket.onclose = (event) => {
      this.socket = null;
      this.lost(event.code !== NO_SUCH_SALE);
    };
  }

  lost(reconnect) {
    this.startPolling();
    if (!reconnect) {
      this.onConnection("polling");
      return;
    }
    this.onConnection("reconnecting");
    // Exponential backoff with jitter: a restarted server is not hit by every page at once.
    const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.failures);
    this.failures += 1;
    setTimeout(() => this.connect(), ceiling / 2 + Math.random() * (ceiling / 2));
  }

  startPolling() {
    if (this.pollTimer !== null) return;
    this.pollTimer = setInterval(() => this.poll(), POLL_MS);
    this.poll();
  }

  stopPolling() {
    if (this.pollTimer === null) return;
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  async poll() {
    const sentAt = Date.now();
    try {
      const response = await fetch(this.pollUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) return;
      const sale = await response.json();
      // The server's clock was read about halfway through the round trip.
      this.on.snapshot(sale, (sentAt + Date.now()) / 2);
    } catch {
      // Offline as well: the next tick tries again.
    }
  }
}
