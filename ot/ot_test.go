package ot_test

import (
	"reflect"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/ot"
)

func r(n int) ot.Op    { return ot.Op{Retain: n} }
func i(s string) ot.Op { return ot.Op{Insert: s} }
func d(n int) ot.Op    { return ot.Op{Delete: n} }

func ops(o ...ot.Op) ot.Operation { return o }

// mustNormalize is for tests whose operations are well-formed by construction.
func mustNormalize(t *testing.T, o ...ot.Op) ot.Operation {
	t.Helper()
	op, err := ot.Normalize(o)
	if err != nil {
		t.Fatalf("Normalize(%v): %v", o, err)
	}
	return op
}

func wantInvalid(t *testing.T, err error) {
	t.Helper()
	if !codecrafter.IsCode(err, codecrafter.EINVALID) {
		t.Fatalf("err = %v, want %s", err, codecrafter.EINVALID)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []ot.Op
		want ot.Operation
	}{
		{"empty", nil, nil},
		{"merges retains", ops(r(1), r(2)), ops(r(3))},
		{"merges inserts", ops(i("😀"), i("é")), ops(i("😀é"))},
		{"merges deletes", ops(d(1), d(2)), ops(d(3))},
		{"insert before delete", ops(r(1), d(2), i("x"), r(1)), ops(r(1), i("x"), d(2), r(1))},
		{"insert joins the insert before a delete", ops(i("a"), d(2), i("b")), ops(i("ab"), d(2))},
		{"delete insert delete", ops(d(1), i("x"), d(1)), ops(i("x"), d(2))},
		{"keeps order otherwise", ops(r(1), i("x"), r(1), d(1)), ops(r(1), i("x"), r(1), d(1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ot.Normalize(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Normalize(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeRejectsMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []ot.Op
	}{
		{"no field set", ops(r(1), ot.Op{})},
		{"retain and insert", ops(ot.Op{Retain: 1, Insert: "x"})},
		{"insert and delete", ops(ot.Op{Insert: "x", Delete: 1})},
		{"retain and delete", ops(ot.Op{Retain: 1, Delete: 1})},
		{"negative retain", ops(r(-1))},
		{"negative delete", ops(d(-2))},
		{"negative with insert", ops(ot.Op{Insert: "x", Retain: -1})},
		{"count too large", ops(r(ot.MaxCount + 1))},
		{"invalid UTF-8 insert", ops(i("\xff"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ot.Normalize(tt.in)
			wantInvalid(t, err)
			wantInvalid(t, ot.Operation(tt.in).Validate())
		})
	}
}

func TestLengths(t *testing.T) {
	t.Parallel()
	op := ops(r(2), i("😀e\u0301"), d(3), r(1))
	if got := op.BaseLen(); got != 6 {
		t.Errorf("BaseLen = %d, want 6", got)
	}
	// "😀" is one code point, "e\u0301" two (the combining mark counts).
	if got := op.TargetLen(); got != 6 {
		t.Errorf("TargetLen = %d, want 6", got)
	}
	if ops().BaseLen() != 0 || ops().TargetLen() != 0 {
		t.Error("empty operation has non-zero lengths")
	}
}

func TestIsNoop(t *testing.T) {
	t.Parallel()
	if !ops().IsNoop() || !ops(r(3)).IsNoop() {
		t.Error("empty or retain-only operation is not a no-op")
	}
	if ops(r(1), i("x")).IsNoop() || ops(d(1)).IsNoop() {
		t.Error("an insert or delete is a no-op")
	}
}

func TestApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		op   ot.Operation
		want string
	}{
		{"empty doc, empty op", "", nil, ""},
		{"insert into empty", "", ops(i("hi")), "hi"},
		{"retain all", "héllo", ops(r(5)), "héllo"},
		{"insert middle", "ab", ops(r(1), i("X"), r(1)), "aXb"},
		{"delete all", "abc", ops(d(3)), ""},
		{"replace", "abc", ops(r(1), i("Z"), d(1), r(1)), "aZc"},
		{"astral retain and delete", "😀a😀b", ops(r(1), d(1), r(1), i("🎉"), d(1)), "😀😀🎉"},
		{"combining mark is its own code point", "e\u0301x", ops(r(1), d(1), r(1)), "ex"},
		{"insert astral after astral", "😀", ops(r(1), i("👍🏽")), "😀👍🏽"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ot.Apply(tt.doc, tt.op)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Apply(%q, %v) = %q, want %q", tt.doc, tt.op, got, tt.want)
			}
		})
	}
}

func TestApplyRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		op   ot.Operation
	}{
		{"too short", "abc", ops(r(2))},
		{"too long", "abc", ops(r(2), d(2))},
		// 4 bytes but one code point: a byte-counting client is refused.
		{"counts bytes not code points", "😀", ops(r(4))},
		// Two UTF-16 units but one code point.
		{"counts UTF-16 units", "😀", ops(r(2))},
		{"edit on empty doc", "", ops(d(1))},
		{"invalid UTF-8 doc", "a\xffb", ops(r(3))},
		{"malformed op", "ab", ops(r(1), ot.Op{Retain: 1, Delete: 1})},
		{"overflowing counts", "a", ops(r(ot.MaxCount+1), d(-ot.MaxCount))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ot.Apply(tt.doc, tt.op)
			wantInvalid(t, err)
		})
	}
}

func TestCompose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b ot.Operation
		want ot.Operation
	}{
		{"empty", nil, nil, nil},
		{"insert then insert", ops(i("a")), ops(r(1), i("b")), ops(i("ab"))},
		{"insert then delete it", ops(r(1), i("😀"), r(1)), ops(r(1), d(1), r(1)), ops(r(2))},
		{"delete then insert", ops(d(1), r(1)), ops(i("x"), r(1)), ops(i("x"), d(1), r(1))},
		{"retain then delete", ops(r(2)), ops(d(1), r(1)), ops(d(1), r(1))},
		{"part of an insert deleted", ops(i("a😀c")), ops(r(1), d(1), r(1)), ops(i("ac"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ot.Compose(tt.a, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Compose(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestComposeRejects(t *testing.T) {
	t.Parallel()
	_, err := ot.Compose(ops(r(1), i("x")), ops(r(1)))
	wantInvalid(t, err)
	_, err = ot.Compose(ops(r(1)), ops(ot.Op{}))
	wantInvalid(t, err)
}

func TestTransform(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		doc          string
		a, b         ot.Operation
		wantA, wantB ot.Operation
		want         string
	}{
		{
			// The package doc's example: the applied insert goes first.
			name:  "same position: applied insert first",
			doc:   "ab",
			a:     ops(r(1), i("X"), r(1)),
			b:     ops(r(1), i("Y"), r(1)),
			wantA: ops(r(1), i("X"), r(2)),
			wantB: ops(r(2), i("Y"), r(1)),
			want:  "aXYb",
		},
		{
			name:  "same position at the start, astral",
			doc:   "",
			a:     ops(i("😀")),
			b:     ops(i("👍🏽")),
			wantA: ops(i("😀"), r(2)),
			wantB: ops(r(1), i("👍🏽")),
			want:  "😀👍🏽",
		},
		{
			name:  "both delete the same text",
			doc:   "abc",
			a:     ops(r(1), d(1), r(1)),
			b:     ops(r(1), d(2)),
			wantA: ops(r(1)),
			wantB: ops(r(1), d(1)),
			want:  "a",
		},
		{
			name:  "insert inside a concurrently deleted range",
			doc:   "abcd",
			a:     ops(r(1), d(2), r(1)),
			b:     ops(r(2), i("X"), r(2)),
			wantA: ops(r(1), d(1), r(1), d(1), r(1)),
			wantB: ops(r(1), i("X"), r(1)),
			want:  "aXd",
		},
		{
			name:  "combining mark",
			doc:   "e\u0301",
			a:     ops(r(1), d(1)),
			b:     ops(r(2), i("!")),
			wantA: ops(r(1), d(1), r(1)),
			wantB: ops(r(1), i("!")),
			want:  "e!",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ap, bp, err := ot.Transform(tt.a, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ap, tt.wantA) || !reflect.DeepEqual(bp, tt.wantB) {
				t.Errorf("Transform(%v, %v) = %v, %v, want %v, %v", tt.a, tt.b, ap, bp, tt.wantA, tt.wantB)
			}
			if got := applyAll(t, tt.doc, tt.a, bp); got != tt.want {
				t.Errorf("a then b' = %q, want %q", got, tt.want)
			}
			if got := applyAll(t, tt.doc, tt.b, ap); got != tt.want {
				t.Errorf("b then a' = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTransformRejects(t *testing.T) {
	t.Parallel()
	_, _, err := ot.Transform(ops(r(2)), ops(r(3)))
	wantInvalid(t, err)
	_, _, err = ot.Transform(ops(r(-1)), ops(r(-1)))
	wantInvalid(t, err)
}

// TestServerRebase is the server's loop: an edit made at an old revision is
// transformed over every edit applied since, in order.
func TestServerRebase(t *testing.T) {
	t.Parallel()
	doc := "func main() {}"
	history := []ot.Operation{
		mustNormalize(t, r(13), i("\n\tprintln(1)\n"), r(1)), // revision 1
		mustNormalize(t, i("// 😀\n"), r(27)),                 // revision 2
	}
	for _, h := range history {
		doc = applyAll(t, doc, h)
	}
	// Made at revision 0: insert "x" at the very end.
	edit := mustNormalize(t, r(14), i("x"))
	for _, h := range history {
		var err error
		if _, edit, err = ot.Transform(h, edit); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := applyAll(t, doc, edit), "// 😀\nfunc main() {\n\tprintln(1)\n}x"; got != want {
		t.Errorf("rebased edit gives %q, want %q", got, want)
	}
}

func TestTransformIndex(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		op    ot.Operation
		index int
		want  int
	}{
		{"insert before", ops(i("😀😀"), r(3)), 1, 3},
		{"insert at the position pushes it", ops(r(1), i("xy"), r(2)), 1, 3},
		{"insert after", ops(r(1), i("xy"), r(2)), 0, 0},
		{"insert at the end pushes an end cursor", ops(r(3), i("x")), 3, 4},
		{"delete before", ops(d(2), r(2)), 3, 1},
		{"inside a delete moves to its start", ops(r(1), d(2), r(1)), 2, 1},
		{"at a delete's end", ops(r(1), d(2), r(1)), 3, 1},
		{"at a delete's start", ops(r(1), d(2), r(1)), 1, 1},
		{"delete after", ops(r(2), d(2)), 1, 1},
		{"replace at the position", ops(r(1), i("Z"), d(1), r(1)), 1, 2},
		{"negative clamps to 0", ops(i("x"), r(2)), -5, 1},
		{"beyond the end clamps", ops(r(2), d(1)), 9, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ot.TransformIndex(tt.op, tt.index); got != tt.want {
				t.Errorf("TransformIndex(%v, %d) = %d, want %d", tt.op, tt.index, got, tt.want)
			}
		})
	}
}

func TestTransformSelection(t *testing.T) {
	t.Parallel()
	// "a😀bc", selected "😀b" backwards (head before anchor).
	sel := ot.Selection{Anchor: 3, Head: 1}
	// Someone inserts "é" at 0 and deletes "c".
	op := ops(i("e\u0301"), r(3), d(1))
	if got, want := ot.TransformSelection(op, sel), (ot.Selection{Anchor: 5, Head: 3}); got != want {
		t.Errorf("TransformSelection = %+v, want %+v", got, want)
	}
	// A selection made two revisions ago is carried over both.
	next := ops(d(2), r(4))
	got := ot.TransformSelection(next, ot.TransformSelection(op, sel))
	if want := (ot.Selection{Anchor: 3, Head: 1}); got != want {
		t.Errorf("over two revisions = %+v, want %+v", got, want)
	}
}

func applyAll(t *testing.T, doc string, ops ...ot.Operation) string {
	t.Helper()
	for _, op := range ops {
		var err error
		if doc, err = ot.Apply(doc, op); err != nil {
			t.Fatalf("Apply(%q, %v): %v", doc, op, err)
		}
	}
	return doc
}

// TestTransformStepByStepDiffersFromComposed pins down why the package doc
// asks to rebase over each applied operation in turn: over their
// composition the tie-break can order two inserts differently.
func TestTransformStepByStepDiffersFromComposed(t *testing.T) {
	t.Parallel()
	doc := "中"
	a1 := ops(r(1), i("A")) // "中A"
	a2 := ops(d(1), r(1))   // "A"
	b := ops(i("B"), d(1))  // concurrent: "B"
	_, b1, err := ot.Transform(a1, b)
	if err != nil {
		t.Fatal(err)
	}
	_, stepwise, err := ot.Transform(a2, b1)
	if err != nil {
		t.Fatal(err)
	}
	a12, err := ot.Compose(a1, a2)
	if err != nil {
		t.Fatal(err)
	}
	_, composed, err := ot.Transform(a12, b)
	if err != nil {
		t.Fatal(err)
	}
	end := applyAll(t, doc, a1, a2)
	if got := applyAll(t, end, stepwise); got != "BA" {
		t.Errorf("step by step = %q, want %q", got, "BA")
	}
	if got := applyAll(t, end, composed); got != "AB" {
		t.Errorf("over the composition = %q, want %q", got, "AB")
	}
}
