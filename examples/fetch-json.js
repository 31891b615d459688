// Fetches JSON from a URL given as input. Internal addresses are refused
// unless allow-listed: scriptbox run examples/fetch-json.js \
//   --input '{"url":"http://127.0.0.1:8000/data.json"}' --allow-host 127.0.0.1
export default async function (input) {
  const response = await fetch(input.url, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`HTTP ${response.status} from ${input.url}`);
  return await response.json();
}
