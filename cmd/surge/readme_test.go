package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// readmeBlock is the first ```sh block of a README section.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", heading)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatalf("README section %q has no sh block", heading)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// The README's first sale, exactly as written there, on a fresh node each time: strictly (bash
// -e: every step must succeed), and pasted into an interactive bash and zsh, as people run it.
// Each must end with the order paid and the audit passed, with no shell error on the way.
func TestREADMEFirstSale(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's first sale needs %s: %v", tool, err)
		}
	}
	block := readmeBlock(t, "## Your first sale")
	for _, sh := range []struct {
		name string
		args []string
	}{
		{"strict", []string{"bash", "-e", "-o", "pipefail", "-c", block}},
		{"bash", []string{"bash", "--norc", "--noprofile", "-i"}},
		{"zsh", []string{"zsh", "-f", "-i"}},
	} {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel() // each waits 20 s for its sale to open
			if _, err := exec.LookPath(sh.args[0]); err != nil {
				if os.Getenv("SURGE_TEST_REQUIRE_ZSH") != "" {
					t.Fatalf("%s is required (SURGE_TEST_REQUIRE_ZSH) but not on PATH", sh.args[0])
				}
				t.Skipf("%s is not installed", sh.args[0])
			}
			c := testConfig(t)
			c.AdminPassword = "change-me-now" // as Quick start runs it
			m, _ := start(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, sh.args[0], sh.args[1:]...)
			if len(sh.args) < 6 { // an interactive shell reads the block as a paste
				cmd.Stdin = strings.NewReader(block)
			}
			cmd.Env = append(os.Environ(), "SURGE=http://"+m.Addr)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil {
				t.Fatalf("the README's first sale failed: %v\n%s\n%s", err, stdout.String(), stderr.String())
			}
			for _, want := range []string{`"state":"paid"`, `"passed":true`} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("the README's first sale printed no %s:\n%s\n%s", want, stdout.String(), stderr.String())
				}
			}
			for _, bad := range []string{"command not found", "parse error", "bad pattern", "no matches found", "not a valid identifier", `{"error"`} {
				if strings.Contains(stderr.String(), bad) {
					t.Errorf("the shell said %q:\n%s", bad, stderr.String())
				}
			}
		})
	}
}
