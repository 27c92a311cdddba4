package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/client"
)

// TestServeChild is a surge node in a child process, for TestKillDuringSale.
func TestServeChild(t *testing.T) {
	dir := os.Getenv("SURGE_CHILD_DATA_DIR")
	if dir == "" {
		t.Skip("run by TestKillDuringSale")
	}
	c := saleConfig(t)
	c.DataDir = dir
	c.GrantRate = 10_000 // TestKillDuringGrant's grant takes seconds, not minutes
	m := NewMain(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Run(context.Background()); err != nil {
		fmt.Println("RUN-FAILED", err)
		os.Exit(3)
	}
	fmt.Println("ADDR", m.Addr)
	select {} // until killed
}

// child starts a node on dir and returns its client and process.
func child(t *testing.T, dir string) (*client.Client, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SURGE_CHILD_DATA_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			go io.Copy(io.Discard, out)
			return client.New("http://" + addr), cmd
		}
	}
	cmd.Process.Kill()
	t.Fatalf("the child node did not start")
	return nil, nil
}

// TestKillDuringSale kills a node with SIGKILL in the middle of a sale, ten times. After each
// restart every acknowledged purchase has its order, shoppers retrying unanswered attempts
// (as clients do) get one definite answer each, and orders plus stock left equal the allotment.
func TestKillDuringSale(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	cl, cmd := child(t, dir)
	tm := newTeam(t, cl)
	const units = 3000
	item := openSale(t, tm, units, 1, 900)
	ctx := context.Background()
	acked := map[int64]int64{} // user → order id
	next := int64(2_000_000)
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for cycle := range 10 {
		var mu sync.Mutex
		var unknown []int64 // attempts cut off by the kill
		killAmid(cmd, 32, time.Duration(150+rng.IntN(350))*time.Millisecond, func() {
			mu.Lock()
			next++
			user := next
			mu.Unlock()
			res, err := buy(ctx, shopper(t, cl, user), item, fmt.Sprint("k-", user))
			mu.Lock()
			switch {
			case err == nil:
				acked[user] = res.OrderID
			case surge.ErrorCode(err) != surge.ESOLDOUT:
				unknown = append(unknown, user)
			}
			mu.Unlock()
		})

		cl, cmd = child(t, dir)
		for _, user := range unknown { // the shopper taps again with the same request
			res, err := buy(ctx, shopper(t, cl, user), item, fmt.Sprint("k-", user))
			if err == nil {
				acked[user] = res.OrderID
			} else if surge.ErrorCode(err) != surge.ESOLDOUT {
				t.Fatalf("cycle %d: retry of shopper %d = %v", cycle, user, err)
			}
		}
		checkSale(t, cl, item, units, acked)
		t.Logf("cycle %d: %d orders acknowledged so far, %d attempts retried after the kill", cycle, len(acked), len(unknown))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// killAmid runs work in a loop on workers goroutines, kills the child node with SIGKILL after
// pause, and returns once the workers stopped: what was under way when the node died is cut off.
func killAmid(cmd *exec.Cmd, workers int, pause time.Duration, work func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				work()
			}
		}()
	}
	time.Sleep(pause)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	close(stop)
	wg.Wait()
}

// checkSale: every acknowledged order exists as acknowledged, and orders plus stock left
// equal the allotment (nothing oversold, nothing lost).
func checkSale(t *testing.T, cl *client.Client, item, units int64, acked map[int64]int64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for user, id := range acked {
		for {
			// The shopper's list of orders is read from the store alone: an order there was
			// written, not only acknowledged (which GET /v1/orders/{id} also serves).
			mine, err := shopper(t, cl, user).Orders(ctx)
			if err == nil && slices.ContainsFunc(mine, func(o *surge.Order) bool { return o.ID == id && o.UserID == user }) {
				break
			}
			if time.Now().After(deadline) {
				for _, o := range mine {
					t.Logf("shopper %d has order %+v", user, o)
				}
				t.Fatalf("acknowledged order %d of shopper %d was never written: %v", id, user, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The stock left, as the item page shows it: re-read by the node at most every 100 ms.
	for {
		d, err := shopper(t, cl, 1).Item(ctx, item)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(acked))+d.Remaining == units {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orders + %d left = %d; want the %d allotted", len(acked), d.Remaining, int64(len(acked))+d.Remaining, units)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
