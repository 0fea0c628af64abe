package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// A second daemon on the same state dir, listening on another socket, is
// refused and says which process holds it; once the first stops, the
// state dir is free again.
func TestSecondDaemonOnOneStateDirIsRefused(t *testing.T) {
	t.Setenv("BM_AGENT_KEYRING", "file")
	home := t.TempDir()
	sockDir, err := os.MkdirTemp("", "bmlk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	newD := func(sock string) *Daemon {
		d, err := New(Config{Home: home, Folder: filepath.Join(home, "notes"), SocketPath: filepath.Join(sockDir, sock)}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := newD("one")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Serve(ctx) }()
	conn, err := ipc.DialWait(ctx, filepath.Join(sockDir, "one"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	err = newD("two").Serve(sctx)
	if !errors.Is(err, ErrHomeLocked) {
		t.Fatalf("second daemon: %v, want ErrHomeLocked", err)
	}
	if !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), "BM_AGENT_HOME") {
		t.Errorf("the refusal does not say who holds it or what to do: %v", err)
	}
	if _, err := os.Stat(filepath.Join(sockDir, "two")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused daemon made its socket: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- newD("two").Serve(ctx2) }()
	conn, err = ipc.DialWait(ctx2, filepath.Join(sockDir, "two"), 5*time.Second)
	if err != nil {
		t.Fatalf("the state dir is still locked after the first daemon stopped: %v", err)
	}
	conn.Close()
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
}
