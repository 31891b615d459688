// The Node.js baseline: how Node-based script runners isolate a run, a fresh
// vm context per run with the script compiled once. Prints JSON.
//   node vm-bench.js trivial RUNS     per-run latencies of the trivial script
//   node vm-bench.js fib N REPEATS    fib(N) in a fresh context, per repeat
const vm = require("node:vm");

const [mode, a, b] = process.argv.slice(2);

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

if (mode === "trivial") {
  const runs = Number(a);
  const script = new vm.Script(
    "const handler = (input) => ({ ok: true, n: input.n + 1 }); JSON.stringify(handler(JSON.parse(inputJson)));",
  );
  const latencies = [];
  const started = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const context = vm.createContext({ inputJson: JSON.stringify({ n: i }) });
    const out = script.runInContext(context);
    if (JSON.parse(out).n !== i + 1) throw new Error("wrong result");
    latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const totalSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((x, y) => x - y);
  console.log(JSON.stringify({
    p50_us: percentile(latencies, 0.5),
    p99_us: percentile(latencies, 0.99),
    runs_per_s: runs / totalSeconds,
  }));
} else if (mode === "fib") {
  const n = Number(a);
  const repeats = Number(b);
  const script = new vm.Script(
    "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(N);",
  );
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    script.runInContext(vm.createContext({ N: n }));
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((x, y) => x - y);
  console.log(JSON.stringify({ median_ms: percentile(times, 0.5) }));
} else {
  console.error("usage: node vm-bench.js trivial RUNS | fib N REPEATS");
  process.exit(2);
}
