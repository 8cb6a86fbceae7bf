// Package web holds the browser client's built assets, web/dist, built from
// the TypeScript sources beside it by `make build` (npm ci && npm run build).
// They are not committed: without a build, Dist holds only a placeholder
// README.md and the server says how to build the client.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Dist is the built client: index.html, and its hashed files under app/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: cannot happen
	}
	return sub
}
