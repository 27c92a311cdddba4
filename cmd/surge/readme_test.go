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

// The README's first sale, exactly as written there, on a fresh node: every step must succeed
// (bash -e) and the audit must pass.
func TestREADMEFirstSale(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's first sale needs %s: %v", tool, err)
		}
	}
	block := readmeBlock(t, "## Your first sale")
	c := testConfig(t)
	c.AdminPassword = "change-me-now" // as Quick start runs it
	m, _ := start(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", block)
	cmd.Env = append(os.Environ(), "SURGE=http://"+m.Addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's first sale failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"state":"paid"`, `"passed":true`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the README's first sale printed no %s:\n%s", want, out)
		}
	}
}
