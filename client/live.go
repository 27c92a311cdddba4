package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/url"

	"github.com/surgecommerce/surge/live"
)

// IngestEvents posts a batch of business events as JSON lines, gzip-compressed if gz.
func (c *Client) IngestEvents(ctx context.Context, lines []byte, gz bool) (*live.IngestResult, error) {
	cl := c
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(lines); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		lines, cl = buf.Bytes(), c.WithHeader("Content-Encoding", "gzip")
	}
	var out live.IngestResult
	if err := cl.send(ctx, "POST", "/v1/events", "application/x-ndjson", bytes.NewReader(lines), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Metric reads a live metric's series, filtered by dimension (platform, room, shop, sku, session).
func (c *Client) Metric(ctx context.Context, name string, filter map[string]string) (*live.Snapshot, error) {
	q := url.Values{}
	for k, v := range filter {
		q.Set(k, v)
	}
	path := "/v1/metrics/" + url.PathEscape(name)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return call[live.Snapshot](ctx, c, "GET", path, nil)
}

// Screen reads the big screen's numbers for a live room ("" for the platform).
func (c *Client) Screen(ctx context.Context, room string) (*live.Screen, error) {
	return call[live.Screen](ctx, c, "GET", "/v1/live/screen?room="+url.QueryEscape(room), nil)
}

// MetricCatalog lists the live metrics' definitions.
func (c *Client) MetricCatalog(ctx context.Context) ([]live.Metric, error) {
	var out struct {
		Items []live.Metric `json:"items"`
	}
	if err := c.Do(ctx, "GET", "/v1/metrics/catalog", nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}
