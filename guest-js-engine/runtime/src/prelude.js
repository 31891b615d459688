// The globals of the script contract (docs/sandbox.md, "Globals"), built on
// the native functions in `host`.
//
// Evaluated once while the engine is pre-initialised (Wizer), so it costs
// nothing per run. The expression's value is an object of internal helpers
// that the Rust side keeps; nothing here is reachable by name from scripts
// except the globals it defines.
((host) => {
  "use strict";

  const describe = (value) => {
    if (typeof value === "string") return value;
    if (value instanceof Error) {
      const head = `${value.name}: ${value.message}`;
      return value.stack ? `${head}\n${value.stack}`.trimEnd() : head;
    }
    if (typeof value === "bigint") return `${value}n`;
    if (typeof value === "function") return `[Function ${value.name || "(anonymous)"}]`;
    if (typeof value === "symbol") return value.toString();
    try {
      const json = JSON.stringify(value);
      return json === undefined ? String(value) : json;
    } catch {
      return String(value);
    }
  };
  const logAt = (level) => (...args) => host.log(level, args.map(describe).join(" "));

  // Levels match the `log.level` enum of the WIT world.
  const console = {
    debug: logAt(0),
    log: logAt(1),
    info: logAt(1),
    warn: logAt(2),
    error: logAt(3),
    trace: logAt(0),
  };

  class Headers {
    #map = new Map();
    constructor(init) {
      if (init == null) return;
      const pairs =
        init instanceof Headers ? init.entries()
        : Array.isArray(init) ? init
        : Object.entries(init);
      for (const [name, value] of pairs) this.append(name, value);
    }
    append(name, value) {
      const key = String(name).toLowerCase();
      const old = this.#map.get(key);
      this.#map.set(key, old === undefined ? String(value) : `${old}, ${value}`);
    }
    set(name, value) { this.#map.set(String(name).toLowerCase(), String(value)); }
    get(name) { return this.#map.get(String(name).toLowerCase()) ?? null; }
    has(name) { return this.#map.has(String(name).toLowerCase()); }
    delete(name) { this.#map.delete(String(name).toLowerCase()); }
    entries() { return this.#map.entries(); }
    keys() { return this.#map.keys(); }
    values() { return this.#map.values(); }
    forEach(callback, thisArg) {
      for (const [name, value] of this.#map) callback.call(thisArg, value, name, this);
    }
    [Symbol.iterator]() { return this.#map.entries(); }
  }

  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const toBytes = (body) => {
    if (body == null) return null;
    if (body instanceof Uint8Array) return body;
    if (body instanceof ArrayBuffer) return new Uint8Array(body);
    if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return encoder.encode(String(body));
  };

  class Response {
    #body;
    constructor(body = null, init = {}) {
      const status = init.status ?? 200;
      if (!Number.isInteger(status) || status < 200 || status > 599) {
        throw new RangeError(`Response status must be an integer from 200 to 599, got ${status}`);
      }
      this.status = status;
      this.statusText = init.statusText ?? "";
      this.headers = new Headers(init.headers);
      this.#body = body;
    }
    get ok() { return this.status >= 200 && this.status < 300; }
    async text() {
      const body = this.#body;
      if (body == null) return "";
      if (typeof body === "string") return body;
      const bytes = toBytes(body);
      return bytes ? decoder.decode(bytes) : String(body);
    }
    async json() { return JSON.parse(await this.text()); }
    async arrayBuffer() {
      const bytes = toBytes(typeof this.#body === "string" ? this.#body : this.#body ?? "");
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    }
    static redirect(url, status = 302) {
      if (![301, 302, 303, 307, 308].includes(status)) {
        throw new RangeError(`Response.redirect status must be 301, 302, 303, 307 or 308, got ${status}`);
      }
      return new Response(null, { status, headers: { location: String(url) } });
    }
    static json(data, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(JSON.stringify(data), { ...init, headers });
    }
  }

  // A webhook call as Workers' `fetch(request, env, ctx)` receives it.
  // `text()` of a JSON body is its JSON text as parsed by the host.
  class Request {
    #body;
    constructor(input, init = {}) {
      this.url = String(input?.url ?? input);
      this.method = String(init.method ?? input?.method ?? "GET").toUpperCase();
      this.headers = new Headers(init.headers ?? input?.headers);
      this.#body = init.body ?? null;
    }
    async text() {
      const body = this.#body;
      if (body == null) return "";
      if (typeof body === "string") return body;
      if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return decoder.decode(toBytes(body));
      // A JSON body the host parsed.
      return JSON.stringify(body);
    }
    async json() { return JSON.parse(await this.text()); }
    async arrayBuffer() {
      const bytes = encoder.encode(await this.text());
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    }
    // `application/x-www-form-urlencoded` bodies.
    async formData() {
      const form = new FormData();
      for (const pair of (await this.text()).split("&")) {
        if (!pair) continue;
        const at = pair.indexOf("=");
        const decode = (t) => decodeURIComponent(t.replace(/\+/g, " "));
        form.append(decode(at < 0 ? pair : pair.slice(0, at)), decode(at < 0 ? "" : pair.slice(at + 1)));
      }
      return form;
    }
  }

  class FormData {
    #entries = [];
    append(name, value) { this.#entries.push([String(name), String(value)]); }
    get(name) { return this.#entries.find(([n]) => n === name)?.[1] ?? null; }
    getAll(name) { return this.#entries.filter(([n]) => n === name).map(([, v]) => v); }
    has(name) { return this.#entries.some(([n]) => n === name); }
    entries() { return this.#entries[Symbol.iterator](); }
    [Symbol.iterator]() { return this.#entries[Symbol.iterator](); }
  }

  // Host calls complete before they return, so each promise is already
  // settled; `await` still works as scripts expect.
  const settle = (call) => {
    try {
      return Promise.resolve(call());
    } catch (error) {
      return Promise.reject(error);
    }
  };

  const fetch = (input, init = {}) => settle(() => {
    const url = typeof input === "string" ? input : String(input?.url ?? input);
    const method = String(init.method ?? "GET").toUpperCase();
    const headers = [...new Headers(init.headers)].map(([k, v]) => [k, v]);
    const reply = host.fetch(method, url, headers, toBytes(init.body));
    return new Response(new Uint8Array(reply.body), { status: reply.status, headers: reply.headers });
  });

  const key = (k) => {
    if (typeof k !== "string") throw new TypeError(`key must be a string, got ${typeof k}`);
    return k;
  };
  const value = (v) => {
    if (typeof v !== "string") {
      throw new TypeError(`value must be a string (use JSON.stringify), got ${typeof v}`);
    }
    return v;
  };

  const sdk = Object.freeze({
    db: Object.freeze({
      get: (k) => settle(() => host.dbGet(key(k))),
      set: (k, v) => settle(() => host.dbSet(key(k), value(v))),
      delete: (k) => settle(() => host.dbDelete(key(k))),
      list: (prefix = "") => settle(() => host.dbList(String(prefix))),
    }),
    cache: Object.freeze({
      get: (k) => settle(() => host.cacheGet(key(k))),
      set: (k, v, options = {}) =>
        settle(() => host.cacheSet(key(k), value(v), options.ttlMs ?? null)),
      delete: (k) => settle(() => host.cacheDelete(key(k))),
    }),
    http: Object.freeze({ fetch }),
  });

  const crypto = Object.freeze({ randomUUID: () => host.randomUUID() });

  const define = (name, v) =>
    Object.defineProperty(globalThis, name, { value: v, writable: true, configurable: true });
  define("console", console);
  define("Headers", Headers);
  define("Response", Response);
  define("Request", Request);
  define("FormData", FormData);
  define("fetch", fetch);
  define("sdk", sdk);
  define("crypto", crypto);
  // The host's clock, so the host decides what "now" is.
  Date.now = () => host.now();

  // The handler of each trigger in the handler form (an object of
  // handlers as the default export, as in Cloudflare Workers).
  const handlers = { webhook: "fetch", scheduled: "scheduled", manual: "run" };

  return {
    // Calls the default export: a function gets `(input, ctx)`; an object
    // of handlers gets the trigger's handler with `(event, env, ctx)`, and
    // the run ends once the promises given to `ctx.waitUntil` settle.
    invoke(exported, input, ctx) {
      if (typeof exported === "function") return exported(input, ctx);
      const name = handlers[ctx.trigger] ?? "run";
      const handler = exported[name];
      if (typeof handler !== "function") {
        const has = Object.keys(handlers).map((t) => handlers[t]).filter((h) => typeof exported[h] === "function");
        throw new TypeError(
          `the default export has no ${name}() handler for a ${ctx.trigger} run` +
          (has.length ? ` (it has ${has.join(", ")})` : ""));
      }
      const pending = [];
      const { env, ...rest } = ctx;
      const handlerCtx = {
        ...rest,
        waitUntil(promise) { pending.push(Promise.resolve(promise)); },
        passThroughOnException() {},
      };
      let event = input;
      if (name === "fetch") {
        event = new Request(input.url ?? input.path, {
          method: input.method, headers: input.headers, body: input.body ?? null,
        });
      } else if (name === "scheduled") {
        event = { scheduledTime: Date.parse(input.scheduledAt), cron: ctx.cron ?? null, noRetry() {} };
      }
      const result = Promise.resolve(handler.call(exported, event, env, handlerCtx));
      const drain = async () => {
        for (const [i, outcome] of (await Promise.allSettled(pending)).entries()) {
          if (outcome.status === "rejected") {
            console.error(`ctx.waitUntil promise ${i + 1} rejected:`, outcome.reason);
          }
        }
      };
      return result.then(
        async (value) => { await drain(); return value; },
        async (error) => { await drain(); throw error; });
    },
    // A `Response` returned by a script becomes the reply; anything else is
    // null and goes through JSON.
    toReply(result) {
      if (!(result instanceof Response)) return null;
      const headers = [...result.headers];
      return result.text().then((body) => ({ status: result.status, headers, body }));
    },
    describe,
  };
})
