#!/usr/bin/env bash
# Re-fetches GraphiQL's browser files from the npm registry into vendor/,
# so the binary serves them itself (no CDN: users may be offline or behind
# a proxy). Bump a version here, run this script, run the server with
# GraphiQL on and check the page renders offline, e.g.
#   chromium --headless --no-sandbox --disable-gpu \
#     --disable-background-networking --disable-component-update \
#     --no-first-run --user-data-dir="$(mktemp -d)" \
#     --virtual-time-budget=8000 --screenshot=/tmp/graphiql.png \
#     http://127.0.0.1:8080/
# then commit vendor/. (go test checks every referenced file is served.)
#
# graphiql's UMD bundle already contains graphql-js and the graphql-ws
# client, so subscriptions (createFetcher's subscriptionUrl) need nothing
# more than React and ReactDOM.
set -euo pipefail

GRAPHIQL_VERSION=3.8.3 # the last major with a UMD bundle
REACT_VERSION=18.3.1   # graphiql 3 wants React 16.8-18

cd "$(dirname "$0")"
out=vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# npm pack checks each tarball against the registry's integrity hash.
(cd "$tmp" && npm pack --silent --json \
	"graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION" >packs.json)
for pkg in graphiql react react-dom; do
	mkdir -p "$tmp/$pkg"
	tar -xzf "$tmp"/"$pkg"-[0-9]*.tgz -C "$tmp/$pkg"
done

rm -rf "$out"
mkdir -p "$out/licenses"
# Source maps are not shipped: drop the comments that point at them.
strip_map() { sed -e '/^\/\/# sourceMappingURL=/d' -e 's|/\*# sourceMappingURL=[^*]*\*/||' "$1" >"$2"; }
strip_map "$tmp/graphiql/package/graphiql.min.js" "$out/graphiql.min.js"
strip_map "$tmp/graphiql/package/graphiql.min.css" "$out/graphiql.min.css"
cp "$tmp/react/package/umd/react.production.min.js" "$out/"
cp "$tmp/react-dom/package/umd/react-dom.production.min.js" "$out/"
for pkg in graphiql react react-dom; do
	cp "$tmp/$pkg/package/LICENSE" "$out/licenses/$pkg.LICENSE"
done

# Record what was fetched: versions, registry integrity, file hashes.
{
	echo "# Written by vendor.sh; do not edit."
	node -e '
		for (const p of JSON.parse(require("fs").readFileSync(process.argv[1])))
			console.log(p.id, p.integrity);
	' "$tmp/packs.json"
	(cd "$out" && sha256sum -- *.js *.css)
} >"$out/VERSIONS"
cat "$out/VERSIONS"
