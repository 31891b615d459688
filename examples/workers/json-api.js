// Workers-style JSON API: GET returns the item named in the query, other
// methods are refused with 405 and an Allow header.
export default {
  async fetch(request) {
    if (request.method !== "GET") {
      return new Response("method not allowed", { status: 405, headers: { allow: "GET" } });
    }
    const query = request.url.split("?")[1] ?? "";
    const id = new URLSearchParamsLite(query).get("id") ?? "none";
    return Response.json({ id, found: id !== "none" });
  },
};

// The query string, parsed (name=value pairs joined by &).
class URLSearchParamsLite {
  constructor(query) {
    this.pairs = query.split("&").filter(Boolean).map((pair) => {
      const [name, value = ""] = pair.split("=");
      return [decodeURIComponent(name), decodeURIComponent(value)];
    });
  }
  get(name) {
    return this.pairs.find(([n]) => n === name)?.[1] ?? null;
  }
}
