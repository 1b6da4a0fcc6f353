// The workerd side of the differential suite: runs one scenario with the real `connect()`.
//
// The harness (harness.py) POSTs a scenario (scenarios.py, placeholders already filled in) and
// gets back an outcome record. library.py runs the same steps with tcpcli; the two records
// must be equal. Keep the step semantics here and in library.py in lockstep.

import { connect } from "cloudflare:sockets";

const encoder = new TextEncoder();
// Bytes travel as latin-1 text in JSON, so every byte value round-trips.
const decoder = new TextDecoder("latin1");

function bytes(text) {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

function text(chunks) {
  let all = "";
  for (const chunk of chunks) all += decoder.decode(chunk);
  return all;
}

function describe(error) {
  if (error instanceof TypeError) return { type: "TypeError", message: error.message };
  if (error instanceof Error) return { type: "Error", message: error.message };
  return { type: typeof error, message: String(error) };
}

// JSON cannot carry NaN or Infinity: scenarios spell them {"$number": "NaN"}.
function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if ("$number" in value) return Number(value.$number);
    const out = {};
    for (const [key, inner] of Object.entries(value)) out[key] = revive(inner);
    return out;
  }
  return value;
}

const PENDING = Symbol("pending");

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Settle a promise within `ms`: {resolved}, {rejected} or {pending: true}.
async function settle(promise, ms, onValue = () => null) {
  const outcome = promise.then(
    (value) => ({ resolved: onValue(value) }),
    (error) => ({ rejected: describe(error) }),
  );
  const winner = await Promise.race([outcome, sleep(ms).then(() => PENDING)]);
  return winner === PENDING ? { pending: true } : winner;
}

function info(value) {
  return {
    remoteAddress: value?.remoteAddress ?? null,
    localAddress: value?.localAddress ?? null,
  };
}

class Run {
  constructor() {
    this.sockets = new Map();
    this.readers = new Map();
    this.writers = new Map();
    this.pendingWrites = [];
  }

  reader(name) {
    if (!this.readers.has(name)) this.readers.set(name, this.sockets.get(name).readable.getReader());
    return this.readers.get(name);
  }

  writer(name) {
    if (!this.writers.has(name)) this.writers.set(name, this.sockets.get(name).writable.getWriter());
    return this.writers.get(name);
  }

  // Read until `limit` bytes (or EOF when limit is null), an error, or `ms` elapse.
  async read(name, limit, ms) {
    const reader = this.reader(name);
    const chunks = [];
    let size = 0;
    const deadline = Date.now() + ms;
    for (;;) {
      if (limit !== null && size >= limit) return { data: text(chunks), eof: false };
      const left = deadline - Date.now();
      let step;
      try {
        step = await Promise.race([reader.read(), sleep(Math.max(left, 0)).then(() => PENDING)]);
      } catch (error) {
        return { data: text(chunks), error: describe(error) };
      }
      if (step === PENDING) {
        // The read stays pending in the background; a later read would race it, so the
        // reader is retired (scenarios never read again after a timeout).
        return { data: text(chunks), timeout: true };
      }
      if (step.done) return { data: text(chunks), eof: true };
      chunks.push(step.value);
      size += step.value.byteLength;
    }
  }

  async step(step) {
    const name = step.socket ?? "main";
    const socket = this.sockets.get(name);
    switch (step.op) {
      case "connect":
        try {
          this.sockets.set(step.as, connect(revive(step.address), revive(step.options)));
          return { ok: true };
        } catch (error) {
          return { throws: describe(error) };
        }
      case "opened":
        return settle(socket.opened, step.within_ms, info);
      case "closed":
        return settle(socket.closed, step.within_ms);
      case "close":
        return settle(socket.close(), step.within_ms);
      case "write":
        return settle(this.writer(name).write(bytes(step.data)), step.within_ms);
      case "write-value":
        // A chunk that is not a Uint8Array: a string, a number, an object, null.
        return settle(this.writer(name).write(step.value), step.within_ms);
      case "write-nowait":
        this.pendingWrites.push(this.writer(name).write(bytes(step.data)));
        return {};
      case "pending-writes": {
        const results = [];
        for (const write of this.pendingWrites) results.push(await settle(write, step.within_ms));
        this.pendingWrites = [];
        return { results };
      }
      case "close-writer":
        return settle(this.writer(name).close(), step.within_ms);
      case "read":
        return this.read(name, step.bytes ?? null, step.within_ms);
      case "cancel-reader":
        return settle(this.reader(name).cancel(), step.within_ms);
      case "second-writer":
        this.writer(name);
        try {
          socket.writable.getWriter();
          return { ok: true };
        } catch (error) {
          return { throws: describe(error) };
        }
      case "second-reader":
        this.reader(name);
        try {
          socket.readable.getReader();
          return { ok: true };
        } catch (error) {
          return { throws: describe(error) };
        }
      case "release-locks":
        // What a Worker does before startTls(): give the streams back.
        this.readers.get(name)?.releaseLock();
        this.writers.get(name)?.releaseLock();
        this.readers.delete(name);
        this.writers.delete(name);
        return {};
      case "start-tls":
        try {
          this.sockets.set(step.as, socket.startTls());
        } catch (error) {
          return { throws: describe(error) };
        }
        if (step.again === undefined) return { ok: true };
        // In the same tick, before anything else runs: a second call on the same socket.
        try {
          this.sockets.set(step.again, socket.startTls());
          return { ok: true, again: { ok: true } };
        } catch (error) {
          return { ok: true, again: { throws: describe(error) } };
        }
      case "opened-all":
        // Promise.all over the sockets' `opened`, each settled within the bound.
        return {
          results: await Promise.all(
            step.sockets.map((each) => settle(this.sockets.get(each).opened, step.within_ms, info)),
          ),
        };
      case "round-trip-all":
        return this.roundTripAll(step.sockets, step.within_ms);
      case "attrs":
        return { upgraded: socket.upgraded, secureTransport: socket.secureTransport };
      case "sleep":
        await sleep(step.ms);
        return {};
      default:
        throw new Error(`unknown step ${step.op}`);
    }
  }

  // Write "x" on each socket in turn and read it back: how many echoed, and the errors of
  // those that did not (sorted, so the order of sockets does not matter).
  async roundTripAll(names, ms) {
    let echoed = 0;
    const rejected = [];
    for (const name of names) {
      try {
        await this.writer(name).write(bytes("x"));
      } catch (error) {
        rejected.push(describe(error));
        continue;
      }
      const result = await this.read(name, 1, ms);
      if (result.data === "x") echoed += 1;
      else rejected.push(result.error ?? result);
    }
    const key = (item) => JSON.stringify(item);
    rejected.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    return { echoed, rejected };
  }

  async cleanup() {
    // Not part of the outcome: close what is left so the peers see the end promptly.
    // Unsettled opens (a peer that never answers) are left for the request's end.
    for (const socket of this.sockets.values()) socket.close().catch(() => {});
    await sleep(0);
  }
}

export default {
  async fetch(request) {
    if (request.method !== "POST") return new Response("ready\n");
    const scenario = await request.json();
    const run = new Run();
    const results = [];
    try {
      for (const step of scenario.steps) {
        let result;
        try {
          result = await run.step(step);
        } catch (error) {
          // Thrown synchronously by a stream getter (e.g. a locked stream).
          result = { throws: describe(error) };
        }
        results.push({ op: step.op, ...result });
        if (step.op === "connect" && result.throws && (step.as ?? "main") === "main") break;
      }
    } finally {
      await run.cleanup();
    }
    return Response.json({ steps: results });
  },
};
