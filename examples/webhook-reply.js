// A webhook handler that answers with its own status and headers.
// scriptbox run examples/webhook-reply.js --input '{"method":"POST","body":{"id":7}}'
export default async function (input) {
  if (input?.method !== "POST") {
    return new Response("use POST", { status: 405, headers: { allow: "POST" } });
  }
  return Response.json({ received: input.body }, { status: 202 });
}
