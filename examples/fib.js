// CPU-bound JavaScript, for measuring how fuel maps to time:
// scriptbox run examples/fib.js --input 25 --stats
function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

export default (n) => fib(typeof n === "number" ? n : 25);
