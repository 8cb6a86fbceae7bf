// Package ot is the text-operation algebra behind collaborative editing:
// operations made of retain / insert / delete components, applied to a
// document, composed, and transformed against concurrent operations. It is
// pure: no I/O, standard library and the root package's error type only.
//
// # Units
//
// Every count and offset is in Unicode code points (Go runes), never bytes
// and never UTF-16 units. Browser editors count UTF-16 code units ("😀" is
// one code point but two UTF-16 units), so clients convert at their
// boundary, both for the operations they send and for cursor positions.
// Combining marks are code points of their own: "é" written as "e\u0301" is
// two.
//
// # Operations
//
// An Operation walks an imaginary cursor over the whole document: Retain n
// skips n code points, Insert s inserts s at the cursor, Delete n removes n
// code points. It must span the whole document: its retains plus deletes
// equal the document's length (BaseLen), else applying it is BAD_USER_INPUT.
// Normalize checks the components a client sent and returns the canonical
// form: no empty components, no two neighbours of the same kind, and an
// insert before a delete at the same position (as ot.js builds them).
//
// # Transform and the tie-break rule
//
// The server is the authority. An edit made against an older revision is
// transformed over every edit applied since, in order:
//
//	for _, applied := range history[baseRevision:] {
//		_, edit, err = ot.Transform(applied, edit)
//	}
//
// Transform(a, b) takes a, the operation already applied (the server's), and
// b, the concurrent one made on the same document; it returns a' and b' such
// that Apply(Apply(doc, a), b') == Apply(Apply(doc, b), a').
//
// Tie-break: when a and b both insert at the same position, a's insert (the
// one already applied) comes first and b's after it. Example, doc "ab":
//
//	a = [Retain 1, Insert "X", Retain 1]   applied first: "aXb"
//	b = [Retain 1, Insert "Y", Retain 1]   concurrent
//	Transform(a, b) = (a', b') with
//	b' = [Retain 2, Insert "Y", Retain 1]  "aXb" -> "aXYb"
//	a' = [Retain 1, Insert "X", Retain 2]  "aYb" -> "aXYb"
//
// Transform over each applied operation in turn, not over their Compose:
// composing can bring inserts made at different positions to one position
// (insert after "x", then delete "x"), where the tie-break then orders them
// differently from the step-by-step result. Either way converges by itself,
// but the server and its clients must all rebase the same way, and clients
// see the history one operation at a time.
//
// A client rebasing its pending edit p over an operation s received from
// the server must put s first, too: (s', p') = Transform(s, p); it applies
// s' to its document and keeps p' as its pending edit, now based on s's
// revision. Note that ot.js's transform gives priority
// to its first argument while its Server and Client pass the client's
// operation first; a client ported from ot.js must swap those arguments
// (and the results) to agree with this server.
//
// # Cursors and selections
//
// TransformIndex moves a position over an operation: an insert at the
// position pushes it after the inserted text (whoever inserted), a deleted
// range collapses onto its start. TransformSelection does it to both ends of
// a Selection, so a selection made at an older revision is carried to the
// current one by transforming it over each operation applied since.
package ot

import (
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
)

// Op is one component of an Operation. Exactly one field is set.
type Op struct {
	Retain int    // skip this many code points
	Insert string // insert this text
	Delete int    // remove this many code points
}

// Operation is a sequence of components spanning a whole document.
type Operation []Op

// MaxCount bounds one component's count: far above any document the
// service keeps, and low enough that summing the counts of any operation
// that fits in memory cannot overflow an int.
const MaxCount = 1 << 30

type kind int

const (
	kindNone kind = iota
	kindRetain
	kindInsert
	kindDelete
)

func (o Op) kind() kind {
	switch {
	case o.Retain > 0:
		return kindRetain
	case o.Insert != "":
		return kindInsert
	case o.Delete > 0:
		return kindDelete
	}
	return kindNone
}

// check reports why o is not a well-formed component, or nil.
func (o Op) check(i int) error {
	if o.Retain < 0 || o.Delete < 0 {
		return codecrafter.Errorf(codecrafter.EINVALID, "edit component %d: negative count", i)
	}
	if o.Retain > MaxCount || o.Delete > MaxCount {
		return codecrafter.Errorf(codecrafter.EINVALID, "edit component %d: count above %d", i, MaxCount)
	}
	set := 0
	if o.Retain != 0 {
		set++
	}
	if o.Insert != "" {
		set++
	}
	if o.Delete != 0 {
		set++
	}
	if set != 1 {
		return codecrafter.Errorf(codecrafter.EINVALID, "edit component %d: set exactly one of retain, insert, delete", i)
	}
	if !utf8.ValidString(o.Insert) {
		return codecrafter.Errorf(codecrafter.EINVALID, "edit component %d: insert is not valid UTF-8", i)
	}
	return nil
}

// Normalize checks ops and returns their canonical form: neighbours of the
// same kind merged, an insert ordered before a delete at the same position.
// A component with a negative count or one above MaxCount, with no field or
// several fields set, or with invalid UTF-8 is BAD_USER_INPUT. The result of no components is
// an empty (nil) Operation, the edit of the empty document.
func Normalize(ops []Op) (Operation, error) {
	var b builder
	for i, o := range ops {
		if err := o.check(i); err != nil {
			return nil, err
		}
		b.add(o)
	}
	return b.ops, nil
}

// Validate checks op's components as Normalize does, without rebuilding.
func (op Operation) Validate() error {
	for i, o := range op {
		if err := o.check(i); err != nil {
			return err
		}
	}
	return nil
}

// BaseLen is the length, in code points, of the documents op applies to.
func (op Operation) BaseLen() int {
	n := 0
	for _, o := range op {
		n += o.Retain + o.Delete
	}
	return n
}

// TargetLen is the length, in code points, of the document op produces.
func (op Operation) TargetLen() int {
	n := 0
	for _, o := range op {
		n += o.Retain + utf8.RuneCountInString(o.Insert)
	}
	return n
}

// IsNoop reports whether op changes nothing (it only retains, or is empty).
func (op Operation) IsNoop() bool {
	for _, o := range op {
		if o.Insert != "" || o.Delete != 0 {
			return false
		}
	}
	return true
}

// Apply returns doc with op applied. It is BAD_USER_INPUT when doc is not
// valid UTF-8, op is malformed, or op's BaseLen is not doc's length.
func Apply(doc string, op Operation) (string, error) {
	if !utf8.ValidString(doc) {
		return "", codecrafter.Errorf(codecrafter.EINVALID, "document is not valid UTF-8")
	}
	if err := op.Validate(); err != nil {
		return "", err
	}
	if n, base := utf8.RuneCountInString(doc), op.BaseLen(); n != base {
		return "", codecrafter.Errorf(codecrafter.EINVALID, "edit spans %d code points, the document has %d", base, n)
	}
	out := make([]byte, 0, len(doc))
	pos := 0 // byte offset in doc
	for _, o := range op {
		switch o.kind() {
		case kindRetain:
			end := advance(doc, pos, o.Retain)
			out = append(out, doc[pos:end]...)
			pos = end
		case kindInsert:
			out = append(out, o.Insert...)
		case kindDelete:
			pos = advance(doc, pos, o.Delete)
		}
	}
	return string(out), nil
}

// advance returns the byte offset n code points after byte offset pos in s.
func advance(s string, pos, n int) int {
	for ; n > 0 && pos < len(s); n-- {
		_, size := utf8.DecodeRuneInString(s[pos:])
		pos += size
	}
	return pos
}

// splitRunes splits s after its first n code points.
func splitRunes(s string, n int) (string, string) {
	i := advance(s, 0, n)
	return s[:i], s[i:]
}

// builder appends components in canonical form.
type builder struct{ ops Operation }

func (b *builder) add(o Op) {
	switch o.kind() {
	case kindRetain:
		b.retain(o.Retain)
	case kindInsert:
		b.insert(o.Insert)
	case kindDelete:
		b.delete(o.Delete)
	}
}

func (b *builder) last() *Op {
	if len(b.ops) == 0 {
		return nil
	}
	return &b.ops[len(b.ops)-1]
}

func (b *builder) retain(n int) {
	if n <= 0 {
		return
	}
	if l := b.last(); l != nil && l.kind() == kindRetain {
		l.Retain += n
		return
	}
	b.ops = append(b.ops, Op{Retain: n})
}

func (b *builder) delete(n int) {
	if n <= 0 {
		return
	}
	if l := b.last(); l != nil && l.kind() == kindDelete {
		l.Delete += n
		return
	}
	b.ops = append(b.ops, Op{Delete: n})
}

// insert keeps inserts ahead of a delete at the same position: "delete 2,
// insert x" and "insert x, delete 2" are the same edit, and one canonical
// form makes equal edits compare equal.
func (b *builder) insert(s string) {
	if s == "" {
		return
	}
	l := b.last()
	switch {
	case l != nil && l.kind() == kindInsert:
		l.Insert += s
	case l != nil && l.kind() == kindDelete:
		n := len(b.ops)
		if n >= 2 && b.ops[n-2].kind() == kindInsert {
			b.ops[n-2].Insert += s
			return
		}
		b.ops = append(b.ops, *l)
		b.ops[n-1] = Op{Insert: s}
	default:
		b.ops = append(b.ops, Op{Insert: s})
	}
}

// reader hands out an operation's components, splitting them on demand.
type reader struct {
	ops Operation
	i   int
	cur Op // the rest of the current component; kindNone when exhausted
}

func newReader(op Operation) *reader {
	r := &reader{ops: op}
	r.next()
	return r
}

func (r *reader) next() {
	r.cur = Op{}
	for r.i < len(r.ops) && r.cur.kind() == kindNone {
		r.cur = r.ops[r.i]
		r.i++
	}
}

// length is the current component's length in code points.
func (r *reader) length() int {
	switch r.cur.kind() {
	case kindRetain:
		return r.cur.Retain
	case kindDelete:
		return r.cur.Delete
	case kindInsert:
		return utf8.RuneCountInString(r.cur.Insert)
	}
	return 0
}

// take consumes n code points of the current component (n <= length) and
// returns them as a component of the same kind.
func (r *reader) take(n int) Op {
	var o Op
	switch r.cur.kind() {
	case kindRetain:
		o = Op{Retain: n}
		r.cur.Retain -= n
	case kindDelete:
		o = Op{Delete: n}
		r.cur.Delete -= n
	case kindInsert:
		o.Insert, r.cur.Insert = splitRunes(r.cur.Insert, n)
	}
	if r.cur.kind() == kindNone {
		r.next()
	}
	return o
}

// takeAll consumes the whole current component.
func (r *reader) takeAll() Op { return r.take(r.length()) }

// Compose returns the single operation equal to applying a and then b:
// Apply(doc, Compose(a, b)) == Apply(Apply(doc, a), b). It is
// BAD_USER_INPUT when a's TargetLen is not b's BaseLen or either is
// malformed.
func Compose(a, b Operation) (Operation, error) {
	if err := validPair(a, b); err != nil {
		return nil, err
	}
	if a.TargetLen() != b.BaseLen() {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "cannot compose: the first edit yields %d code points, the second spans %d", a.TargetLen(), b.BaseLen())
	}
	var out builder
	ra, rb := newReader(a), newReader(b)
	for ra.cur.kind() != kindNone || rb.cur.kind() != kindNone {
		// a's deletes and b's inserts do not meet the other operation.
		if ra.cur.kind() == kindDelete {
			out.add(ra.takeAll())
			continue
		}
		if rb.cur.kind() == kindInsert {
			out.add(rb.takeAll())
			continue
		}
		// Lengths were checked, so both have a component here.
		n := min(ra.length(), rb.length())
		x, y := ra.take(n), rb.take(n)
		switch {
		case x.kind() == kindRetain && y.kind() == kindRetain:
			out.retain(n)
		case x.kind() == kindRetain && y.kind() == kindDelete:
			out.delete(n)
		case x.kind() == kindInsert && y.kind() == kindRetain:
			out.insert(x.Insert)
		case x.kind() == kindInsert && y.kind() == kindDelete:
			// b deletes what a inserted: nothing remains.
		}
	}
	return out.ops, nil
}

// Transform takes a, the operation already applied, and b, a concurrent
// operation on the same document, and returns a' and b' with
// Apply(Apply(doc, a), b') == Apply(Apply(doc, b), a'). When both insert at
// one position, a's insert goes first (see the package doc). It is
// BAD_USER_INPUT when a and b span different lengths or either is
// malformed.
func Transform(a, b Operation) (Operation, Operation, error) {
	if err := validPair(a, b); err != nil {
		return nil, nil, err
	}
	if a.BaseLen() != b.BaseLen() {
		return nil, nil, codecrafter.Errorf(codecrafter.EINVALID, "cannot transform: the edits span %d and %d code points", a.BaseLen(), b.BaseLen())
	}
	var ap, bp builder
	ra, rb := newReader(a), newReader(b)
	for ra.cur.kind() != kindNone || rb.cur.kind() != kindNone {
		// The tie-break: a's insert is taken before b's.
		if ra.cur.kind() == kindInsert {
			o := ra.takeAll()
			ap.insert(o.Insert)
			bp.retain(utf8.RuneCountInString(o.Insert))
			continue
		}
		if rb.cur.kind() == kindInsert {
			o := rb.takeAll()
			ap.retain(utf8.RuneCountInString(o.Insert))
			bp.insert(o.Insert)
			continue
		}
		n := min(ra.length(), rb.length())
		x, y := ra.take(n), rb.take(n)
		switch {
		case x.kind() == kindRetain && y.kind() == kindRetain:
			ap.retain(n)
			bp.retain(n)
		case x.kind() == kindDelete && y.kind() == kindRetain:
			ap.delete(n)
		case x.kind() == kindRetain && y.kind() == kindDelete:
			bp.delete(n)
		case x.kind() == kindDelete && y.kind() == kindDelete:
			// Both deleted the same text: neither has to again.
		}
	}
	return ap.ops, bp.ops, nil
}

func validPair(a, b Operation) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return b.Validate()
}

// TransformIndex returns where the position index (in code points, before
// op) is after op. An insert at the position pushes it after the inserted
// text; a position inside a deleted range moves to the range's start. An
// index outside [0, op.BaseLen()] is first clamped into it, so the result
// is always within [0, op.TargetLen()].
func TransformIndex(op Operation, index int) int {
	index = max(0, min(index, op.BaseLen()))
	out := index
	rest := index // code points of the old document still before the position
	for _, o := range op {
		if rest < 0 {
			break
		}
		switch o.kind() {
		case kindRetain:
			rest -= o.Retain
		case kindInsert:
			out += utf8.RuneCountInString(o.Insert)
		case kindDelete:
			out -= min(rest, o.Delete)
			rest -= o.Delete
		}
	}
	return out
}

// Selection is a range in code points: Anchor where it started, Head where
// the cursor is. A bare cursor has Anchor == Head.
type Selection struct {
	Anchor int
	Head   int
}

// TransformSelection moves both ends of s over op, as TransformIndex does.
func TransformSelection(op Operation, s Selection) Selection {
	return Selection{Anchor: TransformIndex(op, s.Anchor), Head: TransformIndex(op, s.Head)}
}
