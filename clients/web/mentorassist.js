// MentorAssist WebSocket: the browser client.
//
// A dependency-free ES module (no build step): import it from a plain <script type="module">.
// It follows docs/PROTOCOL.md; clients/web/README.md documents the API and the one rule a
// browser has to add to the protocol (how a refused token is recognised, since a browser never
// sees the handshake's HTTP status).
//
//   import { createClient } from "/clients/web/mentorassist.js";
//   const client = createClient({ url: "wss://…/dev", token: async () => fetchMyToken() });
//   client.on("chat", (envelope) => render(envelope.data));
//   client.onState((state) => badge(state));
//   client.connect();

/** The states a client reports through onState() and `client.state`. */
export const State = Object.freeze({
  CONNECTING: "connecting", // connect() was called; the first handshake is under way
  OPEN: "open", // connected: notifications arrive
  RECONNECTING: "reconnecting", // the connection ended unexpectedly; waiting for / making the next attempt
  UNAUTHORIZED: "unauthorized", // the token was refused: stopped until the app calls connect() again
  CLOSED: "closed", // never connected, or the app called close()
});

const DEFAULTS = Object.freeze({
  pingIntervalMs: 240_000, // 4 min: well inside API Gateway's 10-minute idle timeout
  pongTimeoutMs: 30_000, // no frame at all within this long after a ping: the connection is dead
  maxConnectionAgeMs: 7_000_000, // API Gateway ends every connection after 2 h; replace it before
  backoff: { initialMs: 1_000, maxMs: 30_000 },
  stableAfterMs: 30_000, // a connection open this long (or that received a frame) resets the backoff
  maxRefusals: 3, // consecutive refused handshakes before the client gives up (state unauthorized)
  probeTimeoutMs: 5_000,
  dedupeWindow: 1_000, // ids remembered to drop duplicate envelopes (0: keep every duplicate)
  clockSkewMs: 30_000, // the server's tolerance on `exp`, used when reading a token's expiry
});

// The close code the client itself uses for a connection it abandons (3000-4999 are free for
// applications; browsers refuse to send 1001-2999).
const CLOSE_DEAD_CONNECTION = 4000;

/**
 * Create a client. Nothing happens until connect().
 *
 * @param {object} options
 * @param {string} options.url  the stack's `websocketUrl` (ws:// or wss://), without the token
 * @param {() => (string|null|Promise<string|null>)} options.token  asked on every (re)connect;
 *     return a JWT, or null/"" when there is none (the client goes to `unauthorized`); throw when
 *     it could not get one just now (the client retries with backoff)
 * @param {number} [options.pingIntervalMs=240000]
 * @param {number} [options.pongTimeoutMs=30000]
 * @param {number} [options.maxConnectionAgeMs=7000000]
 * @param {{initialMs?: number, maxMs?: number}} [options.backoff]  default 1 s … 30 s
 * @param {number} [options.maxRefusals=3]
 * @param {number} [options.dedupeWindow=1000]
 * @param {typeof WebSocket} [options.WebSocket]  another implementation (default: the global)
 */
export function createClient(options) {
  if (!options || typeof options.url !== "string" || !/^wss?:\/\//i.test(options.url)) {
    throw new TypeError("createClient: `url` must be a ws:// or wss:// URL");
  }
  if (typeof options.token !== "function") {
    throw new TypeError("createClient: `token` must be a function returning the token");
  }
  const config = {
    ...DEFAULTS,
    ...options,
    backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) },
  };
  const WebSocketImpl = options.WebSocket || globalThis.WebSocket;

  const listeners = { byType: new Map(), any: new Set(), state: new Set(), error: new Set() };
  const seen = new Set(); // insertion-ordered: the oldest id is the first one
  const sockets = new Set(); // every socket of this session not yet closed (at most two)

  let state = State.CLOSED;
  let session = 0; // bumped by connect() and close(): late callbacks of an old session are ignored
  let current = null; // the open socket notifications come from
  let attempt = 0; // failed attempts since the last stable connection (drives the backoff)
  let refusals = 0; // consecutive handshakes the server refused
  let retryTimer = null;
  let pingTimer = null;
  let pongTimer = null;
  let ageTimer = null;
  let stableTimer = null;

  // --- public API ---------------------------------------------------------------------------

  const client = {
    get state() {
      return state;
    },

    /** Start connecting (no-op while connecting, open or reconnecting). */
    connect() {
      if (state !== State.CLOSED && state !== State.UNAUTHORIZED) return client;
      session += 1;
      attempt = 0;
      refusals = 0;
      listenForNetwork(true);
      setState(State.CONNECTING);
      openSocket(session);
      return client;
    },

    /** Close for good: no reconnect until connect() is called again. */
    close() {
      session += 1;
      stopTimers();
      listenForNetwork(false);
      for (const ws of sockets) retire(ws, 1000, "client closed");
      sockets.clear();
      current = null;
      if (state !== State.CLOSED) setState(State.CLOSED);
      return client;
    },

    /** Envelopes of one `type`. Returns a function that unsubscribes. */
    on(type, callback) {
      if (typeof type !== "string") throw new TypeError("on(type, callback): type is a string");
      let set = listeners.byType.get(type);
      if (!set) listeners.byType.set(type, (set = new Set()));
      return subscribe(set, callback);
    },

    /** Every envelope, whatever its type. */
    onAny(callback) {
      return subscribe(listeners.any, callback);
    },

    /** State changes: callback(state, detail) with detail {reason?, code?, delayMs?, …}. */
    onState(callback) {
      return subscribe(listeners.state, callback);
    },

    /** Send a ping now (one is sent every pingIntervalMs anyway). False when not open. */
    ping() {
      if (!current || current.readyState !== 1) return false;
      sendPing(current);
      return true;
    },

    /** Error frames from the server and the client's own troubles (never fatal). */
    onError(callback) {
      return subscribe(listeners.error, callback);
    },
  };

  // --- connecting ---------------------------------------------------------------------------

  async function openSocket(mySession, { replacing = false } = {}) {
    let token;
    try {
      token = await config.token();
    } catch (error) {
      if (mySession !== session) return;
      emitError({ code: "token_unavailable", message: "the token provider failed", error });
      if (!replacing) scheduleReconnect(mySession, { reason: "token provider failed" });
      return;
    }
    if (mySession !== session) return;
    if (token === null || token === undefined || token === "") {
      if (!replacing) giveUp("the token provider returned no token");
      return;
    }
    if (typeof token !== "string") {
      emitError({ code: "token_unavailable", message: "the token provider returned a non-string" });
      if (!replacing) giveUp("the token provider returned a non-string");
      return;
    }

    let ws;
    try {
      ws = new WebSocketImpl(withToken(config.url, token));
    } catch (error) {
      emitError({ code: "invalid_url", message: String(error), error });
      client.close();
      return;
    }
    sockets.add(ws);
    let opened = false;

    ws.onopen = () => {
      if (mySession !== session) return retire(ws, 1000, "stale");
      opened = true;
      refusals = 0;
      // One connection at a time: when a replacement is up the old connection goes (what
      // arrived on both is dropped as a duplicate), and a reconnect still waiting or in flight
      // (the old one closed while its replacement was connecting) is not needed any more.
      clearTimeout(retryTimer);
      retryTimer = null;
      for (const other of [...sockets]) {
        if (other === ws) continue;
        sockets.delete(other);
        retire(other, 1000, "replaced");
      }
      current = ws;
      startConnectionTimers(mySession, ws);
      if (state !== State.OPEN) setState(State.OPEN);
    };
    ws.onmessage = (event) => {
      if (mySession !== session) return;
      if (ws === current) noteAlive();
      handleFrame(event.data);
    };
    ws.onerror = () => {
      // Always followed by a close event; the close decides what happens next.
    };
    ws.onclose = (event) => {
      sockets.delete(ws);
      if (mySession !== session) return;
      if (!opened) {
        if (replacing) return; // the old connection carries on; its own close decides
        handshakeFailed(mySession, token, event);
        return;
      }
      if (ws !== current) return; // a connection we replaced
      current = null;
      stopTimers();
      scheduleReconnect(mySession, {
        reason: event.reason || "connection closed",
        code: event.code,
      });
    };
  }

  // A handshake failed before `open`. A browser cannot see its HTTP status (a refused handshake
  // and an unreachable server both look like "error, then close 1006"), so the client asks
  // itself whether the server was reachable: see "A refused token" in clients/web/README.md.
  async function handshakeFailed(mySession, token, event) {
    if (current) return; // another connection of this session opened meanwhile
    const problem = tokenProblem(token, Date.now(), config.clockSkewMs);
    let refused = problem !== null;
    if (!refused) {
      refused = await serverAnswers(config.url, config.probeTimeoutMs);
      if (mySession !== session || current) return;
    }
    if (refused) {
      refusals += 1;
      const reason = problem
        ? `token refused (${problem})`
        : "handshake refused by a reachable server (token refused, or the server failed)";
      if (refusals >= config.maxRefusals) {
        giveUp(reason, refusals);
        return;
      }
      scheduleReconnect(mySession, { reason, code: event.code, refusals });
      return;
    }
    scheduleReconnect(mySession, { reason: "server unreachable", code: event.code });
  }

  function scheduleReconnect(mySession, detail) {
    if (current) return; // another connection of this session is open already
    clearTimeout(retryTimer);
    const delayMs = backoffDelay(attempt, config.backoff);
    attempt += 1;
    setState(State.RECONNECTING, { ...detail, attempt, delayMs });
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (mySession === session) openSocket(mySession);
    }, delayMs);
  }

  function giveUp(reason, refusalCount = 0) {
    session += 1; // late callbacks of this session are ignored from now on
    stopTimers();
    listenForNetwork(false);
    for (const ws of sockets) retire(ws, 1000, "unauthorized");
    sockets.clear();
    current = null;
    setState(State.UNAUTHORIZED, { reason, refusals: refusalCount });
  }

  // --- while open ---------------------------------------------------------------------------

  function startConnectionTimers(mySession, ws) {
    stopConnectionTimers();
    pingTimer = setInterval(() => {
      if (ws.readyState !== 1) return;
      sendPing(ws);
      // The deadline runs from the first unanswered ping: later pings do not extend it.
      if (pongTimer !== null) return;
      pongTimer = setTimeout(() => {
        // No frame since the ping: the TCP connection is probably gone without a close
        // (sleep, network change). Abandon it and reconnect instead of waiting for the OS.
        pongTimer = null;
        if (mySession !== session || ws !== current) return;
        sockets.delete(ws);
        retire(ws, CLOSE_DEAD_CONNECTION, "pong timeout");
        current = null;
        stopTimers();
        scheduleReconnect(mySession, { reason: "no pong within " + config.pongTimeoutMs + " ms" });
      }, config.pongTimeoutMs);
    }, config.pingIntervalMs);
    // Replace the connection a little before API Gateway's 2-hour cap, with jitter so that the
    // clients of one deployment do not all reconnect in the same second.
    const ageMs = config.maxConnectionAgeMs * (0.95 + 0.05 * Math.random());
    ageTimer = setTimeout(() => {
      ageTimer = null;
      if (mySession === session && ws === current) openSocket(mySession, { replacing: true });
    }, ageMs);
    stableTimer = setTimeout(() => {
      stableTimer = null;
      attempt = 0;
    }, config.stableAfterMs);
  }

  function noteAlive() {
    clearTimeout(pongTimer);
    pongTimer = null;
    attempt = 0; // the server delivered a frame: this connection is a good one
  }

  function sendPing(ws) {
    try {
      ws.send(JSON.stringify({ action: "ping" }));
    } catch (error) {
      emitError({ code: "send_failed", message: "could not send a ping", error });
    }
  }

  function handleFrame(data) {
    if (typeof data !== "string") {
      emitError({ code: "invalid_frame", message: "a binary frame (the server sends text)" });
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      emitError({ code: "invalid_frame", message: "a frame that is not JSON", frame: data });
      return;
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      emitError({ code: "invalid_frame", message: "a frame that is not a JSON object", frame });
      return;
    }
    if (typeof frame.id !== "string") {
      // Not an envelope: a reply to one of our frames.
      if (frame.type === "pong") return;
      if (frame.type === "error" || typeof frame.message === "string") {
        // {"type":"error","code":…,"message":…} from $default, or API Gateway's own
        // {"message":"Internal server error","connectionId":…,"requestId":…}.
        emitError({ code: frame.code || "server_error", message: frame.message, frame });
        return;
      }
      emitError({ code: "invalid_frame", message: "a frame without an id", frame });
      return;
    }
    if (isDuplicate(frame.id)) return;
    const envelope = {
      id: frame.id,
      type: typeof frame.type === "string" ? frame.type : "notification",
      data: frame.data,
      sentAt: frame.sentAt,
    };
    const typed = listeners.byType.get(envelope.type);
    if (typed) for (const callback of [...typed]) call(callback, envelope);
    for (const callback of [...listeners.any]) call(callback, envelope);
  }

  // A bounded set of recently seen ids, kept across reconnects; a repeated id counts as recent
  // again (least recently seen goes first).
  function isDuplicate(id) {
    if (config.dedupeWindow <= 0) return false;
    if (seen.has(id)) {
      seen.delete(id);
      seen.add(id);
      return true;
    }
    seen.add(id);
    while (seen.size > config.dedupeWindow) seen.delete(seen.values().next().value);
    return false;
  }

  // --- helpers ------------------------------------------------------------------------------

  function setState(next, detail = {}) {
    state = next;
    for (const callback of [...listeners.state]) call(callback, next, detail);
  }

  function emitError(error) {
    for (const callback of [...listeners.error]) call(callback, error);
  }

  function stopConnectionTimers() {
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    clearTimeout(ageTimer);
    clearTimeout(stableTimer);
    pingTimer = pongTimer = ageTimer = stableTimer = null;
  }

  function stopTimers() {
    stopConnectionTimers();
    clearTimeout(retryTimer);
    retryTimer = null;
  }

  // The OS says the network is back: skip the rest of the backoff.
  function onOnline() {
    if (state === State.RECONNECTING && retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
      openSocket(session);
    }
  }

  function listenForNetwork(on) {
    if (typeof globalThis.addEventListener !== "function") return;
    if (on) globalThis.addEventListener("online", onOnline);
    else globalThis.removeEventListener("online", onOnline);
  }

  return client;
}

/** `url` with the token as the `token` query parameter. */
export function withToken(url, token) {
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

/**
 * Full-jitter exponential backoff (docs/PROTOCOL.md §6): attempt n waits
 * random(0, min(maxMs, initialMs × 2ⁿ)).
 */
export function backoffDelay(attempt, { initialMs, maxMs }) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(Math.random() * ceiling);
}

/**
 * Why a token cannot be accepted, judged without its key: "not a JWT", "no exp", "expired";
 * null when it looks usable. The payload is decoded, never verified: only the server can say
 * whether a token is valid.
 */
export function tokenProblem(token, nowMs = Date.now(), clockSkewMs = DEFAULTS.clockSkewMs) {
  const parts = String(token).split(".");
  if (parts.length !== 3 || !parts.every((part) => /^[A-Za-z0-9_-]+$/.test(part))) {
    return "not a JWT";
  }
  let claims;
  try {
    claims = JSON.parse(base64UrlDecode(parts[1]));
  } catch {
    return "not a JWT";
  }
  if (claims === null || typeof claims !== "object") return "not a JWT";
  if (typeof claims.exp !== "number") return "no exp";
  if (claims.exp * 1000 + clockSkewMs <= nowMs) return "expired";
  return null;
}

function base64UrlDecode(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

// Whether anything answers HTTP at the WebSocket URL's host and path. An opaque (no-cors)
// response is enough: it resolves for any HTTP status and rejects only when there was no answer
// (offline, DNS, refused connection, TLS failure) or the probe timed out. The token is not sent.
async function serverAnswers(wsUrl, timeoutMs) {
  if (typeof fetch !== "function") return false;
  if (typeof navigator !== "undefined" && navigator.onLine === false) return false;
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.search = "";
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    await fetch(url.href, {
      mode: "no-cors",
      cache: "no-store",
      credentials: "omit",
      redirect: "manual",
      referrerPolicy: "no-referrer",
      signal: controller.signal,
    });
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

function subscribe(set, callback) {
  if (typeof callback !== "function") throw new TypeError("callback must be a function");
  set.add(callback);
  return () => set.delete(callback);
}

// A listener that throws must not break the client or the other listeners: report it the way
// an uncaught error in an event handler is reported, and carry on.
function call(callback, ...args) {
  try {
    callback(...args);
  } catch (error) {
    setTimeout(() => {
      throw error;
    });
  }
}

function retire(ws, code, reason) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  try {
    if (ws.readyState === 0 || ws.readyState === 1) ws.close(code, reason);
  } catch {
    // already closing
  }
}
