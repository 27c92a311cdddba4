package http

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/live"
)

// screenPushEvery is how often a live stream looks for changes to push; a dashboard shows a
// change within this much of the board getting it.
const screenPushEvery = 100 * time.Millisecond

// maxScreenStream is how long one live stream stays open; the browser's EventSource reconnects.
// screenKeepalive is how often an idle stream sends a comment line.
const (
	maxScreenStream = 30 * time.Minute
	screenKeepalive = 15 * time.Second
)

//go:embed screen
var screenAssets embed.FS

// MetricCatalog lists every metric's definition.
type MetricCatalog struct {
	Items []live.Metric `json:"items"`
}

func (s *Server) liveRoutes() []route {
	d := s.deps
	if d.Board == nil || d.Ingest == nil || d.Tickets == nil {
		return nil
	}
	return []route{
		{method: "POST", path: "/v1/events", summary: "Ingest a batch of business events: JSON lines, gzip with Content-Encoding: gzip",
			access: signedIn, out: live.IngestResult{}, status: 200, maxBody: live.MaxIngestBytes,
			bodyTypes: []string{ndjsonType, jsonlType, jsonlinesType, "application/json"},
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				var gz bool
				switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
				case "", "identity":
				case "gzip", "x-gzip":
					gz = true
				default:
					return nil, surge.Errorf(surge.EINVALID, "Content-Encoding must be gzip or none, not %q", enc)
				}
				return d.Ingest.Ingest(r.Context(), a, RequestID(r.Context()), r.Body, gz)
			}},
		{method: "GET", path: "/v1/metrics/catalog", summary: "Every live metric's definition", access: signedIn,
			out: MetricCatalog{}, status: 200,
			handle: func(*http.Request, surge.Actor) (any, error) { return MetricCatalog{Items: live.Catalog()}, nil }},
		{method: "GET", path: "/v1/metrics/{name}", summary: "A live metric's value and last seconds (merchants: their shop only)",
			access: signedIn, query: []string{"platform", "room", "shop", "sku", "session"}, out: live.Snapshot{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				key, err := metricKey(r, a)
				if err != nil {
					return nil, err
				}
				return d.Board.GetJSON(key)
			}},
		{method: "GET", path: "/v1/live/screen", summary: "The big screen's numbers for a live room, or the platform (staff)",
			access: signedIn, query: []string{"room"}, out: live.Screen{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				room, err := screenRoom(r, a)
				if err != nil {
					return nil, err
				}
				return s.screen(r.Context(), room), nil
			}},
		{method: "POST", path: "/v1/live/tickets", summary: "A ticket, good for a minute, that opens a room's live stream (staff): for browsers, whose EventSource cannot send a token",
			access: signedIn, query: []string{"room"}, out: live.Ticket{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return d.Tickets.Issue(a, r.URL.Query().Get("room"))
			}},
		{method: "GET", path: "/v1/live/stream", summary: "Server-sent events: the big screen's numbers whenever they change (staff: a bearer token, or ?ticket= from POST /v1/live/tickets)",
			query: []string{"room", "ticket"}, out: live.Screen{}, status: 200,
			stream: func(w http.ResponseWriter, r *http.Request, _ surge.Actor) error {
				a, err := s.streamActor(r)
				if err != nil {
					return err
				}
				room, err := screenRoom(r, a)
				if err != nil {
					return err
				}
				return streamScreen(w, r, d.Board, func(ctx context.Context) live.Screen { return s.screen(ctx, room) }, s.streams)
			}},
	}
}

// Names gives the product names of SKU ids ("" for none).
type Names interface {
	Name(ctx context.Context, sku string) string
}

// namesWait bounds the naming of a screen's top items: names not read by then show as ids,
// and are read again next time.
const namesWait = 250 * time.Millisecond

// screen is the big screen's numbers with its top items named.
func (s *Server) screen(ctx context.Context, room string) live.Screen {
	sc := s.deps.Board.Screen(room)
	if s.deps.Names != nil {
		ctx, cancel := context.WithTimeout(ctx, namesWait)
		defer cancel()
		for i := range sc.TopItems {
			sc.TopItems[i].Name = s.deps.Names.Name(ctx, sc.TopItems[i].SKU)
		}
	}
	return sc
}

// streamActor is who opens a live stream: the bearer of an access token, or of a screen ticket
// for the room asked for.
func (s *Server) streamActor(r *http.Request) (surge.Actor, error) {
	ticket := r.URL.Query().Get("ticket")
	if ticket == "" || r.Header.Get("Authorization") != "" {
		return s.bearer(r)
	}
	a, room, err := s.deps.Tickets.Check(ticket)
	if err != nil {
		return surge.Actor{}, err
	}
	if room != r.URL.Query().Get("room") {
		return surge.Actor{}, surge.Errorf(surge.EFORBIDDEN, "the ticket is for another room")
	}
	return a, nil
}

// metricKey reads a metric request's series, allowing merchants only their own shop.
func metricKey(r *http.Request, a surge.Actor) (string, error) {
	filter := map[string]string{}
	for d, vs := range r.URL.Query() {
		if len(vs) != 1 {
			return "", surge.Errorf(surge.EINVALID, "give %s once", d)
		}
		filter[d] = vs[0] // SeriesKey refuses a dimension the metric does not have
	}
	switch {
	case a.Role.Staff():
	case a.Role == surge.RoleMerchant:
		if filter[live.DimShop] != strconv.FormatInt(a.MerchantID(), 10) || len(filter) != 1 {
			return "", surge.Errorf(surge.EFORBIDDEN, "merchants read their own shop's metrics: pass shop=%d", a.MerchantID())
		}
	default:
		return "", surge.Errorf(surge.EFORBIDDEN, "live metrics are for staff and merchants")
	}
	return live.SeriesKey(r.PathValue("name"), filter)
}

func screenRoom(r *http.Request, a surge.Actor) (string, error) {
	if !a.Role.Staff() {
		return "", surge.Errorf(surge.EFORBIDDEN, "the big screen is for staff")
	}
	room := r.URL.Query().Get("room")
	if room != "" && !surge.ValidDim(room) {
		return "", surge.Errorf(surge.EINVALID, "room must be 1 to %d letters, digits, '-' or '_'", surge.MaxDimLen)
	}
	return room, nil
}

// streamScreen pushes the screen at once and then whenever the board changed, at most every
// screenPushEvery: a burst of changes is one push. A comment line every screenKeepalive keeps
// idle proxies from closing the stream; it ends when the server shuts down (closing).
func streamScreen(w http.ResponseWriter, r *http.Request, board *live.Board, screen func(context.Context) live.Screen, closing context.Context) error {
	ctx, cancel := contextWithTimeout(r, maxScreenStream)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	keepalive := time.NewTicker(screenKeepalive)
	defer keepalive.Stop()
	var last []byte
	var pushed time.Time
	for {
		changed := board.Changed()
		data, err := json.Marshal(screen(ctx))
		if err != nil {
			return nil // headers are out: nothing more to say
		}
		if string(data) != string(last) {
			if _, err := fmt.Fprintf(w, "event: screen\ndata: %s\n\n", data); err != nil {
				return nil
			}
			flush()
			last, pushed = data, time.Now()
		}
		if !awaitChange(ctx, closing, changed, keepalive.C, w, flush) {
			return nil
		}
		if d := screenPushEvery - time.Since(pushed); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-closing.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// awaitChange waits for the board to change, sending a keepalive comment on every tick; false
// means the stream is over.
func awaitChange(ctx, closing context.Context, changed <-chan struct{}, tick <-chan time.Time, w io.Writer, flush func()) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-closing.Done():
			return false
		case <-changed:
			return true
		case <-tick:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return false
			}
			flush()
		}
	}
}

// screenPage serves the big screen: one page for a room (/live/{room}) or the platform (/live),
// and its script and style.
func (s *Server) screenPage(w http.ResponseWriter, r *http.Request) {
	name := "screen/index.html"
	switch {
	case strings.HasSuffix(r.URL.Path, ".js"):
		name = "screen/screen.js"
	case strings.HasSuffix(r.URL.Path, ".css"):
		name = "screen/screen.css"
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
	http.ServeFileFS(w, r, screenAssets, name)
}
