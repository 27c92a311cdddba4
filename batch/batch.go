// Package batch gathers work into batches the way Surge's workers take it: one item waiting,
// then whatever piled up behind it while the last batch was out, handled together, with no
// timer and no wait for a batch to fill.
package batch

// Fill appends to b what in holds now, without waiting for more, until b has max elements or
// in is empty or closed.
func Fill[T any](b []T, in <-chan T, max int) []T {
	for len(b) < max {
		select {
		case v, ok := <-in:
			if !ok {
				return b
			}
			b = append(b, v)
		default:
			return b
		}
	}
	return b
}

// FillFlat appends to b the elements of the slices in holds now, without waiting for more,
// while b has fewer than max elements (the last slice taken may carry it past max) and in is
// neither empty nor closed.
func FillFlat[T any](b []T, in <-chan []T, max int) []T {
	for len(b) < max {
		select {
		case more, ok := <-in:
			if !ok {
				return b
			}
			b = append(b, more...)
		default:
			return b
		}
	}
	return b
}
