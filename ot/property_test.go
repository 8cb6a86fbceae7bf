package ot_test

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter/ot"
)

// alphabet mixes one-byte, two-byte, combining, CJK and astral code points
// (emoji and a skin-tone modifier), so that code-point, byte and UTF-16
// counts all differ.
var alphabet = []rune{'a', 'b', ' ', '\n', 'é', '\u0301', '中', '😀', '👍', '🏽', '𝄞'}

func randText(rnd *rand.Rand, max int) string {
	n := rnd.Intn(max + 1)
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[rnd.Intn(len(alphabet))])
	}
	return b.String()
}

// randComponents returns valid but not necessarily canonical components
// spanning a document of n code points: neighbours of one kind and deletes
// before inserts occur.
func randComponents(rnd *rand.Rand, n int) []ot.Op {
	var out []ot.Op
	for n > 0 {
		k := 1 + rnd.Intn(min(n, 4))
		switch rnd.Intn(3) {
		case 0:
			out = append(out, ot.Op{Retain: k})
			n -= k
		case 1:
			out = append(out, ot.Op{Delete: k})
			n -= k
		default:
			if s := randText(rnd, 3); s != "" {
				out = append(out, ot.Op{Insert: s})
			}
		}
	}
	if rnd.Intn(3) == 0 {
		if s := randText(rnd, 3); s != "" {
			out = append(out, ot.Op{Insert: s})
		}
	}
	return out
}

func randOp(rnd *rand.Rand, doc string) ot.Operation {
	op, err := ot.Normalize(randComponents(rnd, utf8.RuneCountInString(doc)))
	if err != nil {
		panic(err) // randComponents only makes valid components
	}
	return op
}

// scenario is a random document with two concurrent edits a and b on it.
type scenario struct {
	Doc  string
	A, B ot.Operation
	Seed int64 // for further random choices that depend on the above
}

func (scenario) Generate(rnd *rand.Rand, size int) reflect.Value {
	doc := randText(rnd, min(size, 40))
	return reflect.ValueOf(scenario{Doc: doc, A: randOp(rnd, doc), B: randOp(rnd, doc), Seed: rnd.Int63()})
}

var quickConfig = &quick.Config{MaxCount: 2000}

func check(t *testing.T, f func(scenario) bool) {
	t.Helper()
	if err := quick.Check(f, quickConfig); err != nil {
		t.Error(err)
	}
}

// checkTransform is the convergence property, shared with the fuzz target.
func checkTransform(t *testing.T, doc string, a, b ot.Operation) {
	t.Helper()
	ap, bp, err := ot.Transform(a, b)
	if err != nil {
		t.Fatalf("Transform(%v, %v): %v", a, b, err)
	}
	x, err1 := ot.Apply(mustApply(t, doc, a), bp)
	y, err2 := ot.Apply(mustApply(t, doc, b), ap)
	if err1 != nil || err2 != nil || x != y {
		t.Fatalf("doc %q, a %v, b %v: a then b' = %q (%v), b then a' = %q (%v)", doc, a, b, x, err1, y, err2)
	}
	if !canonical(ap) || !canonical(bp) {
		t.Fatalf("Transform(%v, %v) = %v, %v: not canonical", a, b, ap, bp)
	}
}

func checkCompose(t *testing.T, doc string, a, c ot.Operation) {
	t.Helper()
	ac, err := ot.Compose(a, c)
	if err != nil {
		t.Fatalf("Compose(%v, %v): %v", a, c, err)
	}
	if got, want := mustApply(t, doc, ac), mustApply(t, mustApply(t, doc, a), c); got != want {
		t.Fatalf("doc %q, a %v, c %v: Compose gives %q, in turn %q", doc, a, c, got, want)
	}
	if !canonical(ac) {
		t.Fatalf("Compose(%v, %v) = %v: not canonical", a, c, ac)
	}
}

func mustApply(t *testing.T, doc string, op ot.Operation) string {
	t.Helper()
	out, err := ot.Apply(doc, op)
	if err != nil {
		t.Fatalf("Apply(%q, %v): %v", doc, op, err)
	}
	return out
}

// canonical reports whether op has no empty components, no neighbours of one
// kind, and no insert right after a delete.
func canonical(op ot.Operation) bool {
	kind := func(o ot.Op) int {
		switch {
		case o.Retain > 0 && o.Insert == "" && o.Delete == 0:
			return 1
		case o.Insert != "" && o.Retain == 0 && o.Delete == 0:
			return 2
		case o.Delete > 0 && o.Retain == 0 && o.Insert == "":
			return 3
		}
		return 0
	}
	for j, o := range op {
		k := kind(o)
		if k == 0 {
			return false
		}
		if j > 0 {
			prev := kind(op[j-1])
			if prev == k || prev == 3 && k == 2 {
				return false
			}
		}
	}
	return true
}

func TestPropertyTransformConverges(t *testing.T) {
	t.Parallel()
	check(t, func(s scenario) bool {
		checkTransform(t, s.Doc, s.A, s.B)
		checkTransform(t, s.Doc, s.B, s.A)
		return true
	})
}

func TestPropertyComposeThenApply(t *testing.T) {
	t.Parallel()
	check(t, func(s scenario) bool {
		after := mustApply(t, s.Doc, s.A)
		c := randOp(rand.New(rand.NewSource(s.Seed)), after)
		checkCompose(t, s.Doc, s.A, c)
		return true
	})
}

func TestPropertyNormalize(t *testing.T) {
	t.Parallel()
	check(t, func(s scenario) bool {
		raw := randComponents(rand.New(rand.NewSource(s.Seed)), utf8.RuneCountInString(s.Doc))
		once, err := ot.Normalize(raw)
		if err != nil {
			t.Fatal(err)
		}
		twice, err := ot.Normalize(once)
		if err != nil {
			t.Fatal(err)
		}
		// Idempotent, canonical, and the same edit as the raw components.
		return reflect.DeepEqual(once, twice) && canonical(once) &&
			mustApply(t, s.Doc, ot.Operation(raw)) == mustApply(t, s.Doc, once)
	})
}

func TestPropertyTransformIndex(t *testing.T) {
	t.Parallel()
	check(t, func(s scenario) bool {
		n := utf8.RuneCountInString(s.Doc)
		prev := -1
		for idx := -1; idx <= n+1; idx++ {
			got := ot.TransformIndex(s.A, idx)
			// Within the new document, and order preserving.
			if got < 0 || got > s.A.TargetLen() || got < prev {
				t.Logf("doc %q op %v: index %d -> %d (previous %d)", s.Doc, s.A, idx, got, prev)
				return false
			}
			prev = got
		}
		return true
	})
}

// TransformIndex agrees with counting: the new position is the number of
// retained code points before the old one, plus the inserted code points at
// or before it (an insert at the position pushes the cursor).
func TestPropertyTransformIndexCounts(t *testing.T) {
	t.Parallel()
	check(t, func(s scenario) bool {
		for idx := 0; idx <= utf8.RuneCountInString(s.Doc); idx++ {
			want, old := 0, 0 // old: code points of s.Doc walked so far
			for _, o := range s.A {
				switch {
				case o.Retain > 0:
					want += max(0, min(o.Retain, idx-old))
					old += o.Retain
				case o.Delete > 0:
					old += o.Delete
				case old <= idx:
					want += utf8.RuneCountInString(o.Insert)
				}
			}
			if got := ot.TransformIndex(s.A, idx); got != want {
				t.Logf("doc %q op %v: index %d -> %d, want %d", s.Doc, s.A, idx, got, want)
				return false
			}
		}
		return true
	})
}

func FuzzTransform(f *testing.F) {
	f.Add("", int64(1), int64(2))
	f.Add("ab", int64(3), int64(4))
	f.Add("😀a😀", int64(5), int64(6))
	f.Add("e\u0301中👍🏽", int64(7), int64(8))
	f.Add("func main() {\n\tprintln(\"𝄞\")\n}", int64(9), int64(10))
	f.Fuzz(func(t *testing.T, doc string, seedA, seedB int64) {
		if !utf8.ValidString(doc) || utf8.RuneCountInString(doc) > 1000 {
			return // not a document the service keeps: nothing to check
		}
		a := randOp(rand.New(rand.NewSource(seedA)), doc)
		b := randOp(rand.New(rand.NewSource(seedB)), doc)
		checkTransform(t, doc, a, b)
		checkCompose(t, doc, a, randOp(rand.New(rand.NewSource(seedB^seedA)), mustApply(t, doc, a)))
		for idx := 0; idx <= utf8.RuneCountInString(doc); idx++ {
			if got := ot.TransformIndex(a, idx); got < 0 || got > a.TargetLen() {
				t.Fatalf("TransformIndex(%v, %d) = %d outside [0, %d]", a, idx, got, a.TargetLen())
			}
		}
	})
}
