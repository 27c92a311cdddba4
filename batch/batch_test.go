package batch_test

import (
	"slices"
	"testing"

	"github.com/surgecommerce/surge/batch"
)

func TestFill(t *testing.T) {
	tests := []struct {
		name   string
		queued []int
		closed bool
		max    int
		want   []int
	}{
		{"takes what waits", []int{2, 3}, false, 10, []int{1, 2, 3}},
		{"stops at max", []int{2, 3, 4}, false, 3, []int{1, 2, 3}},
		{"stops when closed", []int{2}, true, 10, []int{1, 2}},
		{"nothing waiting", nil, false, 10, []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := make(chan int, 8)
			for _, v := range tc.queued {
				in <- v
			}
			if tc.closed {
				close(in)
			}
			if got := batch.Fill([]int{1}, in, tc.max); !slices.Equal(got, tc.want) {
				t.Errorf("Fill = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestFillFlat(t *testing.T) {
	in := make(chan []int, 8)
	in <- []int{2, 3}
	in <- []int{4, 5}
	in <- []int{6}
	if got := batch.FillFlat([]int{1}, in, 4); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Errorf("FillFlat = %v; want whole slices up to max, [1 2 3 4 5]", got)
	}
	close(in)
	if got := batch.FillFlat([]int{1}, in, 10); !slices.Equal(got, []int{1, 6}) {
		t.Errorf("FillFlat after close = %v; want what was left, [1 6]", got)
	}
}
