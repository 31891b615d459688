// The Node.js webhook baseline: an http server that runs the webhook bench's
// script for every request in a fresh vm context (the script compiled once),
// as Node-based script runners isolate a run, and answers as a sync webhook
// does: {"result": ...}. One process, as a Node server runs by default.
//   node vm-http.js     listens on 127.0.0.1, an ephemeral port; prints it
const http = require("node:http");
const vm = require("node:vm");

const script = new vm.Script(
  "const handler = (input) => ({ ok: true, method: input.method });" +
    "JSON.stringify(handler(JSON.parse(inputJson)));",
);

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://localhost");
    const input = {
      method: req.method,
      path: url.pathname,
      headers: req.headers,
      query: Object.fromEntries(url.searchParams),
      body: body === "" ? null : body,
    };
    const context = vm.createContext({ inputJson: JSON.stringify(input) });
    const output = script.runInContext(context);
    const reply = `{"result":${output}}`;
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(reply),
    });
    res.end(reply);
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
});
