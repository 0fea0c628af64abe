// Command bm-demo runs the whole product on one machine, the way `make demo`
// shows it: bm-server with its embedded defaults and a demo account, a
// bm-agent daemon on a demo notes folder, logged in through the real OAuth
// flow; it then shows a note travelling each way and keeps running until
// Ctrl-C so a person can keep editing and run `bm-agent status`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bm-demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "directory holding bm-agent and bm-server")
	dir := flag.String("dir", "", "where the demo keeps its data (default: a new temporary dir)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	absBin, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "bm-demo-"); err != nil {
			return err
		}
	}
	h := &harness.Harness{Bin: absBin, Dir: *dir}
	defer h.Stop()
	const email = "demo@example.com"
	password := harness.RandomPassword()

	say := func(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }
	say("starting bm-server (SQLite, embedded S3, built-in issuer) in %s", *dir)
	if err := h.StartServer(ctx, email, password); err != nil {
		return err
	}
	say("bm-server: API %s, S3 %s, demo account %s / %s", h.ServerURL, h.S3URL, email, password)

	a, err := h.StartAgent(ctx, "agent")
	if err != nil {
		return err
	}
	say("bm-agent running on notes folder %s", a.Folder)
	say("logging in through the OAuth authorization code + PKCE flow (the demo fills in the login page)")
	st, err := h.Login(ctx, a, email, password)
	if err != nil {
		return err
	}
	say("logged in as %s: tenant %s, bucket %s", st.Account, st.TenantID, st.Bucket)

	dev, err := h.NewDevice(ctx, email, password)
	if err != nil {
		return err
	}
	say("a separate S3 client (aws-sdk-go-v2) has its own bucket-scoped key %s", dev.Creds.AccessKey)

	note := "hello from the notes folder.md"
	content := []byte("# Hello\n\nWritten at " + time.Now().Format(time.RFC3339) + "\n")
	if err := os.WriteFile(filepath.Join(a.Folder, note), content, 0o600); err != nil {
		return err
	}
	say("wrote %q into the folder; waiting for it in the bucket...", note)
	took, err := harness.Poll(ctx, 60*time.Second, func() error {
		got, err := dev.GetObject(ctx, note)
		if err == nil && string(got) != string(content) {
			err = errors.New("content differs")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("the note did not reach the bucket: %w", err)
	}
	say("the note reached the bucket %s after the write (no manual sync)", took.Round(time.Millisecond))

	remote := "from another device.md"
	body := []byte("# From S3\n\nPut by a separate S3 client.\n")
	if err := dev.PutObject(ctx, remote, body); err != nil {
		return fmt.Errorf("put object: %w", err)
	}
	say("put %q into the bucket with the separate S3 client; asking the agent to sync", remote)
	if _, err := h.CLI(ctx, a, "sync"); err != nil {
		return err
	}
	took, err = harness.Poll(ctx, 60*time.Second, func() error {
		got, err := os.ReadFile(filepath.Join(a.Folder, remote))
		if err == nil && string(got) != string(body) {
			err = errors.New("content differs")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("the object did not reach the folder: %w", err)
	}
	say("the object reached the folder %s after the sync: %s", took.Round(time.Millisecond), filepath.Join(a.Folder, remote))

	// Nothing a sync replaces is lost: the other device overwrites the
	// note, and the version it replaced comes back with one command.
	if err := dev.PutObject(ctx, note, []byte("# Hello\n\nOverwritten by the other device.\n")); err != nil {
		return fmt.Errorf("put object: %w", err)
	}
	say("the separate S3 client overwrote %q; after a sync the agent keeps the version it replaced:", note)
	if _, err := h.CLI(ctx, a, "sync"); err != nil {
		return err
	}
	out, err := h.CLI(ctx, a, "versions", note)
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	say("bm-agent restore %q brings it back:", note)
	out, err = h.CLI(ctx, a, "restore", note)
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	if got, err := os.ReadFile(filepath.Join(a.Folder, note)); err != nil || string(got) != string(content) {
		return fmt.Errorf("the restore did not bring the note back: %q, %v", got, err)
	}
	fmt.Printf(`
The demo keeps running. Edit notes in:

  %s

and see the daemon in another terminal:

  %s status --socket %s

Logs: %s. Press Ctrl-C to stop.
`, a.Folder, filepath.Join(absBin, "bm-agent"), a.Socket, *dir)
	<-ctx.Done()
	say("stopping")
	return nil
}

// indent indents every line of s for the demo's output.
func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("    " + l)
		}
	}
	return b.String()
}
