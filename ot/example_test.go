package ot_test

import (
	"fmt"

	"github.com/codecrafter/codecrafter/ot"
)

// The package doc's tie-break example: a was applied first, so its insert
// goes before b's at the same position.
func ExampleTransform() {
	doc := "ab"
	a := ot.Operation{{Retain: 1}, {Insert: "X"}, {Retain: 1}}
	b := ot.Operation{{Retain: 1}, {Insert: "Y"}, {Retain: 1}}
	aPrime, bPrime, _ := ot.Transform(a, b)
	afterA, _ := ot.Apply(doc, a)
	viaA, _ := ot.Apply(afterA, bPrime)
	afterB, _ := ot.Apply(doc, b)
	viaB, _ := ot.Apply(afterB, aPrime)
	fmt.Println(viaA, viaB)
	fmt.Println(bPrime)
	// Output:
	// aXYb aXYb
	// [{2  0} {0 Y 0} {1  0}]
}

// Offsets count code points: "😀" is one, although it is two UTF-16 units
// in a browser and four bytes in UTF-8.
func ExampleTransformIndex() {
	op, _ := ot.Normalize([]ot.Op{{Insert: "😀"}, {Retain: 3}})
	fmt.Println(ot.TransformIndex(op, 0), ot.TransformIndex(op, 2), op.TargetLen())
	// Output: 1 3 4
}
