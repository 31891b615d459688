#!/usr/bin/env bash
# Contract tests: schemathesis against a live `scriptbox serve` (SQLite,
# loopback only) with a real API key, every operation of
# /api/openapi.json. Fails on a server error (5xx), a status code or
# content type the document does not list, or a body that does not match
# its schema.
#
#   tests/contract/run.sh                   # after `cargo build` (or cargo test)
#   SCHEMATHESIS=/path/to/schemathesis CONTRACT_MAX_EXAMPLES=50 tests/contract/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${SCRIPTBOX_BIN:-target/debug/scriptbox}
st=${SCHEMATHESIS:-schemathesis}
examples=${CONTRACT_MAX_EXAMPLES:-25}
phases=${CONTRACT_PHASES:-examples,coverage,fuzzing}
checks=${CONTRACT_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}

dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
admin=127.0.0.1:$(free_port)
public=127.0.0.1:$(free_port)
db="sqlite://$dir/contract.db"
key=$("$bin" tenant create acme --database "$db" | tail -n1)

"$bin" serve --listen "$admin" --public-listen "$public" --database "$db" >"$dir/serve.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fs "http://$admin/health/live" >/dev/null && break
  sleep 0.1
done

# Something to find: a webhook script at acme/echo (the example the
# document gives for the webhook operation), a manual script, a secret.
api() { curl -fsS -H "Authorization: Bearer $key" -H 'content-type: application/json' "$@"; }
api -X POST "http://$admin/api/scripts" -d '{"name": "echo", "trigger_type": "webhook",
  "webhook_path": "echo", "source": "export default (input) => ({ method: input.method })"}' >/dev/null
api -X POST "http://$admin/api/scripts" -d '{"name": "hello", "trigger_type": "manual",
  "source": "export default (input) => ({ hello: input })"}' >/dev/null
api -X PUT "http://$admin/api/secrets/TOKEN" -d '{"value": "s3cret-value"}' >/dev/null

status=0
# The live stream never ends, so it is left to its own tests
# (tests/tests/suite/stream.rs); schemathesis reads whole bodies.
echo "== admin listener: every operation but the webhook call and the live stream"
"$st" run "http://$admin/api/openapi.json" --url "http://$admin" \
  --header "Authorization: Bearer $key" --exclude-path '/{tenant}/{path}' \
  --exclude-path /api/executions/stream \
  --checks "$checks" --max-examples "$examples" --workers 1 \
  --phases "$phases" --suppress-health-check all || status=$?
echo "== public listener: the webhook call"
"$st" run "http://$admin/api/openapi.json" --url "http://$public" \
  --include-path '/{tenant}/{path}' \
  --checks "$checks" --max-examples "$examples" --workers 1 \
  --phases "$phases" --suppress-health-check all || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- serve log (last 40 lines)" >&2
  tail -n 40 "$dir/serve.log" >&2
fi
exit "$status"
