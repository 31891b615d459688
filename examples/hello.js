// scriptbox run examples/hello.js --input '{"name":"Ada"}'
export default async function (input, ctx) {
  console.log("called by", ctx.trigger);
  return { greeting: `Hello, ${input?.name ?? "world"}!` };
}
