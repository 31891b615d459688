// Counts its runs in the tenant's persistent key-value store.
// scriptbox run examples/counter.js
export default async function () {
  const n = Number((await sdk.db.get("count")) ?? 0) + 1;
  await sdk.db.set("count", String(n));
  await sdk.cache.set("last-run", new Date().toISOString(), { ttlMs: 60_000 });
  return { n };
}
