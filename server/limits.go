package server

import (
	"cmp"
	"context"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// queryShape refuses operations whose fields nest deeper than maxDepth,
// or that expand (fragments inlined) to more than maxFields fields:
// gqlgen's complexity calculation walks that expansion, so a small
// "fragment bomb" (each fragment spreading the previous one twice) would
// otherwise cost exponential time. Fragments count where they are spread;
// introspection fields are left to gqlparser's own introspection rule.
type queryShape struct{ maxDepth, maxFields int }

// maxExpandedFields bounds the expansion: GraphiQL's schema query is about
// 200 fields; gqlgen needs ~1ms per 3000 to compute complexity.
const maxExpandedFields = 20000

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = queryShape{}

func (queryShape) ExtensionName() string                   { return "QueryShape" }
func (queryShape) Validate(graphql.ExecutableSchema) error { return nil }

func (q queryShape) MutateOperationContext(_ context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	w := shapeWalker{doc: opCtx.Doc, memo: map[string]shape{}, visiting: map[string]bool{}, cap: q.maxFields}
	sh := w.walk(opCtx.Operation.SelectionSet)
	var err *gqlerror.Error
	switch {
	case q.maxDepth > 0 && sh.depth > q.maxDepth:
		err = gqlerror.Errorf("operation is nested %d levels deep, more than the limit of %d", sh.depth, q.maxDepth)
	case sh.fields > q.maxFields:
		err = gqlerror.Errorf("operation expands to more than %d fields (fragments included)", q.maxFields)
	}
	if err != nil {
		errcode.Set(err, errcode.ValidationFailed)
	}
	return err
}

// shape is a selection set's depth and expanded field count.
type shape struct{ depth, fields int }

// shapeWalker measures selection sets. A fragment's shape does not depend
// on where it is spread, so it is computed once (linear time); visiting
// breaks the cycles validation should already have refused; field counts
// saturate just above cap.
type shapeWalker struct {
	doc      *ast.QueryDocument
	memo     map[string]shape
	visiting map[string]bool
	cap      int
}

func (w shapeWalker) walk(set ast.SelectionSet) shape {
	var total shape
	for _, sel := range set {
		var sh shape
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				sh = shape{1, 1} // __typename, or introspection
			} else {
				sh = w.walk(s.SelectionSet)
				sh.depth++
				sh.fields++
			}
		case *ast.InlineFragment:
			sh = w.walk(s.SelectionSet)
		case *ast.FragmentSpread:
			sh = w.fragment(s.Name)
		}
		total.depth = max(total.depth, sh.depth)
		total.fields = min(total.fields+sh.fields, w.cap+1)
	}
	return total
}

func (w shapeWalker) fragment(name string) shape {
	if sh, ok := w.memo[name]; ok {
		return sh
	}
	f := w.doc.Fragments.ForName(name)
	if f == nil || w.visiting[name] {
		return shape{}
	}
	w.visiting[name] = true
	sh := w.walk(f.SelectionSet)
	delete(w.visiting, name)
	w.memo[name] = sh
	return sh
}

// transportKey holds how an operation arrived, as the graphql route
// records it for transportGuard.
type transportKey struct{}

const (
	transportGET       = "GET"
	transportPOST      = "POST"
	transportWebsocket = "websocket"
)

// transportGuard refuses what an HTTP transport must not run: mutations
// over GET (a link or an <img> could trigger them) and subscriptions over
// plain HTTP (they need a WebSocket).
type transportGuard struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = transportGuard{}

func (transportGuard) ExtensionName() string                   { return "TransportGuard" }
func (transportGuard) Validate(graphql.ExecutableSchema) error { return nil }

func (transportGuard) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	via, _ := ctx.Value(transportKey{}).(string)
	op := opCtx.Operation.Operation
	var err *gqlerror.Error
	switch {
	case via == transportGET && op != ast.Query:
		err = gqlerror.Errorf("GET requests can only run queries: send %ss with POST", op)
	case via != transportWebsocket && op == ast.Subscription:
		err = gqlerror.Errorf("subscriptions need a WebSocket connection to this endpoint (graphql-transport-ws or graphql-ws)")
	}
	if err != nil {
		errcode.Set(err, errcode.ValidationFailed)
	}
	return err
}

// noIntrospection refuses __schema and __type when introspection is off,
// as a request error: gqlgen would otherwise fail the field while
// executing, which reads as INTERNAL.
type noIntrospection struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = noIntrospection{}

func (noIntrospection) ExtensionName() string                   { return "NoIntrospection" }
func (noIntrospection) Validate(graphql.ExecutableSchema) error { return nil }

func (noIntrospection) MutateOperationContext(_ context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	if !introspects(opCtx.Doc, opCtx.Operation.SelectionSet, map[string]bool{}) {
		return nil
	}
	err := gqlerror.Errorf("introspection is disabled on this server")
	errcode.Set(err, errcode.ValidationFailed)
	return err
}

// introspects reports whether a root selection set asks for __schema or
// __type (root-only fields, so only fragments on the root type matter).
func introspects(doc *ast.QueryDocument, set ast.SelectionSet, seen map[string]bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" {
				return true
			}
		case *ast.InlineFragment:
			if introspects(doc, s.SelectionSet, seen) {
				return true
			}
		case *ast.FragmentSpread:
			if f := doc.Fragments.ForName(s.Name); f != nil && !seen[s.Name] {
				seen[s.Name] = true
				if introspects(doc, f.SelectionSet, seen) {
					return true
				}
			}
		}
	}
	return false
}

// aliasLimit refuses operations that ask for one field under more than
// max response keys in one selection set (fragments merged, as GraphQL
// merges them): 300 aliases of execution(id) { stdin } is a small query
// with a huge answer and 300 store reads. It relies on queryShape having
// bounded the expansion first.
type aliasLimit struct{ max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = aliasLimit{}

func (aliasLimit) ExtensionName() string                   { return "AliasLimit" }
func (aliasLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (a aliasLimit) MutateOperationContext(_ context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	err := a.check(opCtx.Doc, opCtx.Operation.SelectionSet)
	if err != nil {
		errcode.Set(err, errcode.ValidationFailed)
	}
	return err
}

// check counts the response keys of each field name in set, then checks
// the merged selection of each key.
func (a aliasLimit) check(doc *ast.QueryDocument, set ast.SelectionSet) *gqlerror.Error {
	byKey := map[string][]*ast.Field{}
	var keys []string
	collectFields(doc, set, byKey, &keys, map[string]bool{})
	perName := map[string]int{}
	for _, k := range keys {
		name := byKey[k][0].Name
		if perName[name]++; perName[name] > a.max {
			return gqlerror.Errorf("field %q is asked for under more than %d aliases in one selection (the limit is %d)", name, a.max, a.max)
		}
	}
	for _, k := range keys {
		var merged ast.SelectionSet
		for _, f := range byKey[k] {
			merged = append(merged, f.SelectionSet...)
		}
		if len(merged) > 0 {
			if err := a.check(doc, merged); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectFields groups the fields of set by response key, in order,
// inlining fragments; a fragment spread twice into one set adds nothing.
func collectFields(doc *ast.QueryDocument, set ast.SelectionSet, byKey map[string][]*ast.Field, keys *[]string, spread map[string]bool) {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			k := cmp.Or(s.Alias, s.Name)
			if _, ok := byKey[k]; !ok {
				*keys = append(*keys, k)
			}
			byKey[k] = append(byKey[k], s)
		case *ast.InlineFragment:
			collectFields(doc, s.SelectionSet, byKey, keys, spread)
		case *ast.FragmentSpread:
			if f := doc.Fragments.ForName(s.Name); f != nil && !spread[s.Name] {
				spread[s.Name] = true
				collectFields(doc, f.SelectionSet, byKey, keys, spread)
			}
		}
	}
}
