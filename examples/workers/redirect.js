// Workers-style redirect: old paths move to the new site, keeping the query.
export default {
  async fetch(request, env) {
    const [, query] = request.url.split("?");
    const target = `${env.NEW_SITE ?? "https://example.com"}/welcome${query ? `?${query}` : ""}`;
    return Response.redirect(target, 301);
  },
};
