package stock_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stock"
)

const crashItems = 4

// TestCrashChild is the engine under load in a child process; TestCrashRecovery runs it and
// kills it. It prints one line per acknowledged decision: "R item user request", "C item
// request" (confirmed) or "X item request" (released).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("SURGE_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrashRecovery")
	}
	cycle := os.Getenv("SURGE_CRASH_CYCLE")
	e, err := stock.Open(stock.Options{Dir: dir, SnapshotBytes: 64 << 10}) // small: snapshots happen mid-load
	if err != nil {
		fmt.Println("OPEN-FAILED", err)
		os.Exit(3)
	}
	ctx := context.Background()
	for id := int64(1); id <= crashItems; id++ {
		if err := e.Load(ctx, surge.StockItem{ID: id, Allotted: 50_000, PerUserLimit: 3}); err != nil {
			fmt.Println("LOAD-FAILED", err)
			os.Exit(3)
		}
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	ack := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		mu.Unlock()
	}
	fmt.Println("READY")
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; ; i++ {
				item := int64(rng.IntN(crashItems) + 1)
				user := rng.Int64N(1_000_000) + 1
				req := fmt.Sprintf("c%s-w%d-%d", cycle, w, i)
				res, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: user, Quantity: 1, RequestID: req})
				if err != nil || res.Outcome != surge.Reserved {
					continue
				}
				ack("R %d %d %s", item, user, req)
				switch rng.IntN(4) {
				case 0:
					if e.Confirm(ctx, item, req) == nil {
						ack("C %d %s", item, req)
					}
				case 1:
					if e.Release(ctx, item, req) == nil {
						ack("X %d %s", item, req)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestCrashRecovery kills the engine with SIGKILL at random moments, 20 times, and checks after
// each restart that every acknowledged decision survived and every invariant holds.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	type want struct {
		item  int64
		user  int64
		state string
	}
	acked := map[string]*want{}
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("kill timing seed %d", seed)
	for cycle := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SURGE_CRASH_DIR="+dir, "SURGE_CRASH_CYCLE="+strconv.Itoa(cycle))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		if l := <-lines; l != "READY" {
			cmd.Process.Kill()
			t.Fatalf("cycle %d: child said %q", cycle, l)
		}
		kill := time.After(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		n := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				f := strings.Fields(l)
				switch f[0] {
				case "R":
					item, _ := strconv.ParseInt(f[1], 10, 64)
					user, _ := strconv.ParseInt(f[2], 10, 64)
					acked[f[3]] = &want{item: item, user: user, state: "reserved"}
				case "C":
					acked[f[2]].state = "sold"
				case "X":
					acked[f[2]].state = "released"
				}
				n++
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				kill = nil
			}
		}
		cmd.Wait()
		if n == 0 {
			t.Fatalf("cycle %d: the child acknowledged nothing before it was killed", cycle)
		}

		e, err := stock.Open(stock.Options{Dir: dir})
		if err != nil {
			t.Fatalf("cycle %d: Open after kill -9 = %v", cycle, err)
		}
		if err := e.Check(); err != nil {
			t.Fatalf("cycle %d: invariants after restart: %v", cycle, err)
		}
		for req, w := range acked {
			got, ok := e.Lookup(w.item, req)
			// A confirm or release that became durable but was killed before its answer got
			// out may have moved a reservation on; an acknowledged one may not be undone.
			if !ok || got.UserID != w.user || w.state != "reserved" && got.State != w.state {
				t.Fatalf("cycle %d: acknowledged %s (%+v) came back as %+v, %v", cycle, req, *w, got, ok)
			}
		}
		e.Close()
		t.Logf("cycle %d: %d decisions acknowledged before the kill, %d checked after restart", cycle, n, len(acked))
	}
}
