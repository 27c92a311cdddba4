package risk

import (
	"errors"
	"math"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// Rules are parsed and type-checked by CEL. Most are integer arithmetic and comparisons over
// features joined by && and ||: for those, the checked expression is also turned into Go
// closures that read the signal's features once each, which evaluates 50 rules in a fraction
// of what CEL's interpreter takes (its general activation and values cost about 150 ns a rule).
// Any expression with something else (strings, lists, macros, doubles) runs on CEL's program.
// Both give the same answer, errors included (TestFastRulesAgreeWithCEL).

// values are one signal's features as rules read them, each computed once.
type values struct {
	a    *activation
	gen  uint32
	seen [maxFeatures]uint32 // gen when the feature's value was computed
	v    [maxFeatures]int64
}

const maxFeatures = 128

func init() {
	if len(featureList) > maxFeatures {
		panic("risk: more features than values holds")
	}
}

// reset makes the values those of another signal.
func (v *values) reset(a *activation) {
	v.a = a
	v.gen++
	if v.gen == 0 { // wrapped: forget every stamp
		clear(v.seen[:])
		v.gen = 1
	}
}

func (v *values) feature(i int) int64 {
	if v.seen[i] == v.gen {
		return v.v[i]
	}
	f := &featureList[i]
	var x int64
	if e := v.a.ents[f.subject]; e != nil {
		x = f.value(e, v.a.now)
	}
	v.seen[i], v.v[i] = v.gen, x
	return x
}

// node is a compiled expression: its value (a bool is 0 or 1) and whether it has one (false:
// it failed, as CEL's evaluation errs).
type node func(v *values) (int64, bool)

var errNotFast = errors.New("not a fast expression")

// fast compiles a checked expression into closures, or errNotFast.
func fast(checked *cel.Ast) (node, error) {
	native := checked.NativeRep()
	return fastNode(native, native.Expr())
}

func fastNode(a *ast.AST, e ast.Expr) (node, error) {
	typ := a.GetType(e.ID())
	if !typ.IsExactType(types.IntType) && !typ.IsExactType(types.BoolType) {
		return nil, errNotFast
	}
	switch e.Kind() {
	case ast.LiteralKind:
		switch l := e.AsLiteral().(type) {
		case types.Int:
			x := int64(l)
			return func(*values) (int64, bool) { return x, true }, nil
		case types.Bool:
			x := b2i(bool(l))
			return func(*values) (int64, bool) { return x, true }, nil
		}
		return nil, errNotFast
	case ast.IdentKind, ast.SelectKind:
		ref, ok := a.ReferenceMap()[e.ID()]
		if !ok || ref.Value != nil {
			return nil, errNotFast
		}
		i, ok := featureIndex[ref.Name]
		if !ok {
			return nil, errNotFast
		}
		return func(v *values) (int64, bool) { return v.feature(i), true }, nil
	case ast.CallKind:
	default:
		return nil, errNotFast
	}
	call := e.AsCall()
	if call.IsMemberFunction() {
		return nil, errNotFast
	}
	args := make([]node, len(call.Args()))
	for i, arg := range call.Args() {
		n, err := fastNode(a, arg)
		if err != nil {
			return nil, err
		}
		args[i] = n
	}
	op := call.FunctionName()
	if len(args) == 2 && op != operators.LogicalAnd && op != operators.LogicalOr && op != operators.Equals && op != operators.NotEquals {
		// arithmetic and ordering take two ints
		for _, arg := range call.Args() {
			if !a.GetType(arg.ID()).IsExactType(types.IntType) {
				return nil, errNotFast
			}
		}
	}
	if (op == operators.Equals || op == operators.NotEquals) && !sameType(a, call.Args()) {
		return nil, errNotFast
	}
	switch {
	case len(args) == 1 && op == operators.LogicalNot:
		x := args[0]
		return func(v *values) (int64, bool) { b, ok := x(v); return 1 - b, ok }, nil
	case len(args) == 1 && op == operators.Negate:
		x := args[0]
		return func(v *values) (int64, bool) {
			n, ok := x(v)
			return -n, ok && n != math.MinInt64
		}, nil
	case len(args) == 3 && op == operators.Conditional:
		c, t, f := args[0], args[1], args[2]
		return func(v *values) (int64, bool) {
			b, ok := c(v)
			if !ok {
				return 0, false
			}
			if b == 1 {
				return t(v)
			}
			return f(v)
		}, nil
	case len(args) == 2:
		return twoArgs(op, args[0], args[1])
	}
	return nil, errNotFast
}

func sameType(a *ast.AST, args []ast.Expr) bool {
	if len(args) != 2 {
		return false
	}
	l, r := a.GetType(args[0].ID()), a.GetType(args[1].ID())
	return l.IsExactType(types.IntType) && r.IsExactType(types.IntType) || l.IsExactType(types.BoolType) && r.IsExactType(types.BoolType)
}

func twoArgs(op string, x, y node) (node, error) {
	switch op {
	case operators.LogicalAnd: // false wins over an error, as in CEL
		return func(v *values) (int64, bool) {
			a, aok := x(v)
			if aok && a == 0 {
				return 0, true
			}
			b, bok := y(v)
			if bok && b == 0 {
				return 0, true
			}
			return 1, aok && bok
		}, nil
	case operators.LogicalOr: // true wins over an error
		return func(v *values) (int64, bool) {
			a, aok := x(v)
			if aok && a == 1 {
				return 1, true
			}
			b, bok := y(v)
			if bok && b == 1 {
				return 1, true
			}
			return 0, aok && bok
		}, nil
	}
	f, ok := arith[op]
	if !ok {
		return nil, errNotFast
	}
	return func(v *values) (int64, bool) {
		a, aok := x(v)
		if !aok {
			return 0, false
		}
		b, bok := y(v)
		if !bok {
			return 0, false
		}
		return f(a, b)
	}, nil
}

// arith is CEL's integer operators, with its errors: overflow and division by zero.
var arith = map[string]func(a, b int64) (int64, bool){
	operators.Add: func(a, b int64) (int64, bool) {
		s := a + b
		return s, (s > a) == (b > 0)
	},
	operators.Subtract: func(a, b int64) (int64, bool) {
		d := a - b
		return d, (d < a) == (b > 0)
	},
	operators.Multiply: func(a, b int64) (int64, bool) {
		if a == 0 || b == 0 {
			return 0, true
		}
		p := a * b
		return p, p/b == a && !(a == -1 && b == math.MinInt64) && !(b == -1 && a == math.MinInt64)
	},
	operators.Divide: func(a, b int64) (int64, bool) {
		if b == 0 || a == math.MinInt64 && b == -1 {
			return 0, false
		}
		return a / b, true
	},
	operators.Modulo: func(a, b int64) (int64, bool) {
		if b == 0 || a == math.MinInt64 && b == -1 {
			return 0, false
		}
		return a % b, true
	},
	operators.Equals:        func(a, b int64) (int64, bool) { return b2i(a == b), true },
	operators.NotEquals:     func(a, b int64) (int64, bool) { return b2i(a != b), true },
	operators.Less:          func(a, b int64) (int64, bool) { return b2i(a < b), true },
	operators.LessEquals:    func(a, b int64) (int64, bool) { return b2i(a <= b), true },
	operators.Greater:       func(a, b int64) (int64, bool) { return b2i(a > b), true },
	operators.GreaterEquals: func(a, b int64) (int64, bool) { return b2i(a >= b), true },
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
