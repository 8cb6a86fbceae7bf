#!/usr/bin/env bash
# Checks schema.graphqls against the public API contract. Uses the shared
# checker when this checkout sits beside ../shared, and otherwise the same
# check (graphql-js findBreakingChanges) on the copy in contract/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x ../shared/bin/check-contract ]; then
  exec ../shared/bin/check-contract "$@"
fi
dir=${CONTRACT_CHECK_DIR:-${TMPDIR:-/tmp}/codecrafter-contract-check}
if [ ! -f "$dir/node_modules/graphql/package.json" ]; then
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" graphql@16 >/dev/null
fi
NODE_PATH="$dir/node_modules" node - contract/api-contract.graphql "$@" <<'JS'
const fs = require('fs');
const { buildSchema, findBreakingChanges } = require('graphql');
const [contractPath, ...files] = process.argv.slice(2);
const load = (paths) => buildSchema(paths.map((p) => fs.readFileSync(p, 'utf8')).join('\n'));
const breaks = findBreakingChanges(load([contractPath]), load(files));
for (const b of breaks) console.log(`${b.type}: ${b.description}`);
console.log(breaks.length === 0 ? 'contract: all operations and fields served' : `contract: ${breaks.length} breaking difference(s)`);
process.exit(breaks.length === 0 ? 0 : 1);
JS
