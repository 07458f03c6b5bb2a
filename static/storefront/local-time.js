// Every <time data-local-time> on a page: the server wrote it on the shop's clock; this adds
// the shopper's own, from the browser's time zone, so an 11.11 start needs no sums.
// The shop's zone is <body data-shop-zone>; data-local-time="seconds" shows seconds too.

export function wallTime(at, zone, { seconds = false } = {}) {
  const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: zone };
  if (seconds) options.second = "2-digit";
  return new Intl.DateTimeFormat(document.documentElement.lang || undefined, options).format(at);
}

export function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

function span(name, text) {
  const element = document.createElement("span");
  element.dataset[name] = "";
  element.textContent = text;
  return element;
}

export function showLocalTimes(root = document) {
  const shopZone = document.body.dataset.shopZone || "UTC";
  const mine = browserZone();
  for (const element of root.querySelectorAll("time[data-local-time]")) {
    const at = new Date(element.dateTime);
    if (Number.isNaN(at.getTime())) continue;
    const seconds = element.dataset.localTime === "seconds";
    const parts = [span("timeLocal", `${wallTime(at, mine, { seconds })} your time (${mine})`)];
    if (mine !== shopZone) {
      parts.push(document.createTextNode(" · "));
      parts.push(span("timeShop", `${wallTime(at, shopZone, { seconds })} shop time (${shopZone})`));
    }
    element.replaceChildren(...parts);
    element.title = at.toISOString();
  }
}

showLocalTimes();
