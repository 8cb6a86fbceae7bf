package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
)

// Cost is what one field adds to an operation's complexity, by
// "Type.field" in Config.Costs. gqlgen's default charges 1 per field,
// whatever it returns: 300 aliases of a megabyte of stdin cost 300.
type Cost struct {
	// Field is the field's own cost (0: 1).
	Field int
	// Items is the expected length of a list field without a limit
	// argument; a list with one is charged its limit. Its selection is
	// charged once per item.
	Items int
}

// Large strings (up to 1 MiB) cost as much as 10 fields: enough that a
// long list of them is refused, low enough that a client may list a
// session's last 20 runs with their output (the response size limit
// bounds what a few of the largest ones can add up to).
const largeStringCost = 10

// DefaultCosts are the costs of the fields of CodeCrafter's schema that
// return much: large strings and lists without a limit argument.
var DefaultCosts = map[string]Cost{
	"Execution.code":          {Field: largeStringCost},
	"Execution.stdin":         {Field: largeStringCost},
	"Execution.stdout":        {Field: largeStringCost},
	"Execution.stderr":        {Field: largeStringCost},
	"Execution.compileOutput": {Field: largeStringCost},
	"Session.code":            {Field: largeStringCost},
	"Query.mySessions":        {Items: 20},
	"Session.participants":    {Items: 10},
	"Query.languages":         {Items: 10},
	"Runtime.aliases":         {Items: 3},
	"CodeEdit.ops":            {Items: 10},
}

// maxListLimit bounds the limit argument the cost assumes: the services
// refuse larger ones anyway, and it keeps the product from overflowing.
const maxListLimit = 10000

// costSchema gives gqlgen's complexity walk the costs; it is only handed
// to complexity.Calculate, never to the executor.
type costSchema struct {
	graphql.ExecutableSchema
	costs map[string]Cost
}

func (c costSchema) Complexity(ctx context.Context, typeName, field string, child int, args map[string]any) (int, bool) {
	cost, known := c.costs[typeName+"."+field]
	items, limited := limitArg(args)
	if !known && !limited {
		return c.ExecutableSchema.Complexity(ctx, typeName, field, child, args)
	}
	if !limited {
		items = cost.Items
	}
	own := max(cost.Field, 1)
	if items > 0 {
		child = mulSat(child, items)
	}
	return addSat(own, child), true
}

// limitArg returns a list field's limit argument (its default included).
func limitArg(args map[string]any) (int, bool) {
	var n float64
	switch v := args["limit"].(type) {
	case int:
		n = float64(v)
	case int64:
		n = float64(v)
	case int32:
		n = float64(v)
	case float64:
		n = v
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return 0, false
		}
		n = f
	default:
		return 0, false
	}
	return int(min(max(n, 1), maxListLimit)), true
}

func mulSat(a, b int) int {
	if a > 0 && b > math.MaxInt/a {
		return math.MaxInt
	}
	return a * b
}

func addSat(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// costLimit is gqlgen's complexity limit with Costs applied.
type costLimit struct {
	limit int
	costs map[string]Cost
	es    costSchema
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = (*costLimit)(nil)

func (*costLimit) ExtensionName() string { return "CostLimit" }

func (c *costLimit) Validate(es graphql.ExecutableSchema) error {
	c.es = costSchema{ExecutableSchema: es, costs: c.costs}
	return nil
}

func (c *costLimit) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	cost := complexity.Calculate(ctx, c.es, opCtx.Operation, opCtx.Variables)
	if cost <= c.limit {
		return nil
	}
	err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d (large strings such as stdout cost %d, lists their limit times their selection)",
		cost, c.limit, largeStringCost)
	errcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
	return err
}

// responseLimit bounds the JSON of one response (each event of a
// subscription is one). Resolved strings are counted against a budget as
// fields resolve, so once it is spent no further field runs; the
// marshalled response is then checked exactly. Either way the response is
// replaced by one BAD_USER_INPUT error.
type responseLimit struct {
	max     int64
	present func(context.Context, error) *gqlerror.Error
}

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
	graphql.FieldInterceptor
} = responseLimit{}

func (responseLimit) ExtensionName() string                   { return "ResponseLimit" }
func (responseLimit) Validate(graphql.ExecutableSchema) error { return nil }

// responseBudget is what one response may still spend, in bytes.
type responseBudget struct {
	left atomic.Int64
}

type responseBudgetKey struct{}

// fieldOverhead approximates the JSON of a field besides its strings
// (key, quotes, separators, small scalars).
const fieldOverhead = 16

func (l responseLimit) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	b := &responseBudget{}
	b.left.Store(l.max)
	resp := next(context.WithValue(ctx, responseBudgetKey{}, b))
	if resp == nil || (b.left.Load() >= 0 && int64(len(resp.Data)) <= l.max) {
		return resp
	}
	err := codecrafter.Errorf(codecrafter.EINVALID,
		"the response is larger than the limit of %s: ask for fewer fields, aliases or list items", sizeString(l.max))
	return &graphql.Response{Errors: gqlerror.List{l.present(ctx, err)}, Extensions: resp.Extensions}
}

func (l responseLimit) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	b, _ := ctx.Value(responseBudgetKey{}).(*responseBudget)
	if b == nil {
		return next(ctx)
	}
	if b.left.Load() < 0 {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "the response is too large")
	}
	res, err := next(ctx)
	if b.left.Add(-fieldOverhead-resultBytes(res)) < 0 {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "the response is too large")
	}
	return res, err
}

// resultBytes is the length of a resolved string; other values are small
// or made of fields counted on their own.
func resultBytes(v any) int64 {
	switch s := v.(type) {
	case string:
		return int64(len(s))
	case *string:
		if s != nil {
			return int64(len(*s))
		}
	case []byte:
		return int64(len(s))
	}
	return 0
}

func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
