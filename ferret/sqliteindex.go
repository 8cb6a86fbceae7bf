package ferret

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // FerretDB's SQLite driver, registered as "sqlite"
)

// FerretDB v1 finds a document by _id with `WHERE _ferretdb_sjson->'$._id'
// = ?`, but indexes _id as `_ferretdb_sjson->"_id"`: SQLite cannot use
// that index, so every lookup, update and delete by _id scans the table.
// ensureIDIndexes adds an index on FerretDB's own expression to each
// collection table of the database files in dir. FerretDB does not know
// about it; dropping a collection drops its table and the index with it.

const (
	ferretCollections = "_ferretdb_collections"
	ferretIDExpr      = "_ferretdb_sjson->'$._id'"
)

// ensureIDIndexes indexes every collection of every database in dir.
func ensureIDIndexes(ctx context.Context, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.sqlite"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		errs = append(errs, ensureIDIndex(ctx, f, ""))
	}
	return errors.Join(errs...)
}

// ensureIDIndex indexes the collection of the database file (every one
// when collection is "").
func ensureIDIndex(ctx context.Context, file, collection string) error {
	if _, err := os.Stat(file); err != nil {
		return err
	}
	u := url.URL{Scheme: "file", Opaque: filepath.ToSlash(file), RawQuery: "_pragma=busy_timeout(10000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()

	q := "SELECT table_name FROM " + ferretCollections
	args := []any{}
	if collection != "" {
		q += " WHERE name = ?"
		args = append(args, collection)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // not (yet) a FerretDB database
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		q := fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", quoteIdent(t+"_codecrafter_id"), quoteIdent(t), ferretIDExpr)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: index %s: %w", file, t, err)
		}
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
