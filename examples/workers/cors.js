// Workers-style CORS: answers preflight requests and adds the headers a
// browser needs to every reply.
const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-max-age": "86400",
};

export default {
  async fetch(request) {
    if (request.method === "OPTIONS") {
      const asked = request.headers.get("access-control-request-headers");
      return new Response(null, {
        status: 204,
        headers: { ...cors, "access-control-allow-headers": asked ?? "content-type" },
      });
    }
    return new Response(JSON.stringify({ ok: true }), {
      headers: { ...cors, "content-type": "application/json" },
    });
  },
};
