// Workers-style body reading: JSON, form posts and plain text, chosen by
// the request's content type.
export default {
  async fetch(request) {
    const type = request.headers.get("content-type") ?? "";
    let received;
    if (type.includes("application/json")) {
      received = { kind: "json", value: await request.json() };
    } else if (type.includes("application/x-www-form-urlencoded")) {
      const form = await request.formData();
      received = { kind: "form", value: Object.fromEntries(form.entries()) };
    } else {
      received = { kind: "text", value: await request.text() };
    }
    return Response.json(received);
  },
};
