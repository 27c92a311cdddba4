package main

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/surgecommerce/surge/client"
)

func ptr[T any](v T) *T { return &v }

func authorized(r *http.Request, c *client.Client) *http.Request { return c.Authorize(r) }

// metric is a metric's value on a node's /metrics: the sum of its samples over their labels, or
// the one sample of a name given with its labels (0 when it is not there).
func metric(t *testing.T, c *client.Client, name string) float64 {
	t.Helper()
	resp, err := http.Get(c.BaseURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && (strings.HasSuffix(name, "}") || !strings.HasPrefix(line, name+"{")) {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		sum += f
	}
	return sum
}
