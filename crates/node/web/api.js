// The node's HTTP API and event stream (docs/api.md), as the UI uses them: JSON requests
// with the bearer token when the node asks for one, and a WebSocket that reconnects.

const TOKEN_KEY = "omnipeer.token";

/** An API failure: HTTP status and the node's one-line message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode): the token lives for this page only.
  }
  memoryToken = token;
  declined = false;
}

let memoryToken = getToken();

// Called with no arguments when the node answers 401; resolves to a token to try, or
// null when the user gives up. Set by the UI (it shows a dialog).
let askToken = async () => null;
export function onTokenNeeded(fn) {
  askToken = fn;
}

// While one 401 dialog is open, other requests wait for its answer instead of opening
// their own.
let pendingAsk = null;
// The user cancelled the dialog: no more asking (the event stream retries would pop it
// up again and again) until a token is set in Settings.
let declined = false;

async function tokenAfter401() {
  if (declined) return null;
  if (!pendingAsk) {
    pendingAsk = askToken()
      .then((t) => {
        if (t === null) declined = true;
        return t;
      })
      .finally(() => {
        pendingAsk = null;
      });
  }
  return pendingAsk;
}

/**
 * One API request. `body` (an object) is sent as JSON. Resolves to the parsed answer;
 * rejects with ApiError. On 401 it asks for a token (once per request) and tries again.
 */
export async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json" };
    if (memoryToken) headers.Authorization = `Bearer ${memoryToken}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, `the node cannot be reached (${e.message})`);
    }
    if (res.status === 401 && attempt < 3) {
      const t = await tokenAfter401();
      if (t === null) throw new ApiError(401, "a token is needed to use this node");
      setToken(t);
      continue;
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) {
      const msg = data && typeof data.error === "string" ? data.error : `${res.status} ${res.statusText}`;
      throw new ApiError(res.status, msg);
    }
    return data;
  }
}

/**
 * The event stream: calls `onEvent(event)` for each event and `onState(state)` with
 * "connecting", "open" or "closed" (with the delay before the next try, in ms). After a
 * drop it reconnects with a growing delay (0.5 s doubling to 10 s). Each time it is
 * connected it calls `onReopen(first)`, so the UI re-reads what it may have missed.
 */
export class EventStream {
  constructor({ onEvent, onState, onReopen }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReopen = onReopen;
    this.delay = 500;
    this.everOpen = false;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = memoryToken ? `?token=${encodeURIComponent(memoryToken)}` : "";
    return `${proto}//${location.host}/api/events${q}`;
  }

  /** Events are arriving now. */
  isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Drop the connection and connect again now (e.g. after the token changed). */
  restart() {
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.delay = 500;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    this.onState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.delay = 500;
      this.onState("open");
      this.onReopen(!this.everOpen);
      this.everOpen = true;
    };
    ws.onmessage = (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch {
        return;
      }
      if (ev && typeof ev.type === "string") this.onEvent(ev);
    };
    ws.onclose = () => {
      this.ws = null;
      if (!opened) {
        // The upgrade failed: maybe the token is missing or wrong. A plain request tells
        // (and asks for the token on 401) before the next try.
        api("GET", "/api/networks").catch(() => {});
      }
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    const d = this.delay;
    this.delay = Math.min(this.delay * 2, 10000);
    this.onState("closed", d);
    this.timer = setTimeout(() => this.connect(), d);
  }
}
