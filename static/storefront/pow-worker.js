// The proof-of-work worker: fetches a challenge for the sale and solves it off the main
// thread, so the page stays responsive while it hashes (a module worker; no build step).
//
// In:  {challengeUrl, csrfToken}
// Out: {ok: true, challenge, solution, difficulty}
//      {ok: false, httpStatus, body, retryAfter} for an HTTP error, {ok: false, httpStatus: 0} offline.
import { solve } from "./sha256.js";

self.onmessage = async (event) => {
  const { challengeUrl, csrfToken } = event.data;
  let response;
  try {
    response = await fetch(challengeUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
    });
  } catch {
    self.postMessage({ ok: false, httpStatus: 0, body: null, retryAfter: null });
    return;
  }
  const body = await response.json().catch(() => null);
  if (!response.ok || body === null) {
    self.postMessage({ ok: false, httpStatus: response.status, body, retryAfter: response.headers.get("Retry-After") });
    return;
  }
  // Start from a random counter: two tabs of one shopper do not race for the same answer.
  const start = Math.floor(Math.random() * 1e9);
  const solution = body.difficulty > 0 ? solve(body.challenge, body.difficulty, start) : "";
  self.postMessage({ ok: true, challenge: body.challenge, solution, difficulty: body.difficulty });
};
