package risk_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/storetest"
)

// A block made on one node takes effect on another within about a second.
func TestBlockReachesOtherNodes(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, b := risk.NewBlacklist(db, log, nil), risk.NewBlacklist(db, log, nil)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go b.Run(runCtx)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	if _, err := a.Block(ctx, op, risk.BlockInput{UserID: 42, Reason: "bot", TTLSec: 60}); err != nil {
		t.Fatal(err)
	}
	if !a.Blocked(42) {
		t.Fatal("the node that blocked does not see the block at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !b.Blocked(42) {
		if time.Now().After(deadline) {
			t.Fatal("another node never saw the block")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.Blocked(43) {
		t.Fatal("a user nobody blocked is blocked")
	}
	for _, bad := range []risk.BlockInput{{UserID: 0, Reason: "x", TTLSec: 1}, {UserID: 1, Reason: "", TTLSec: 1}, {UserID: 1, Reason: "x", TTLSec: 0}} {
		if _, err := a.Block(ctx, op, bad); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("Block(%+v) = %v; want EINVALID", bad, err)
		}
	}
}
