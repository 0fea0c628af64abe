package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

func TestRetryGrowsWithJitterWithinBounds(t *testing.T) {
	for run := 0; run < 50; run++ {
		r := newRetry(time.Minute, defaultRetryInitial)
		base := defaultRetryInitial
		seen := map[time.Duration]bool{}
		for n := 1; n <= 10; n++ {
			d := r.failed()
			lo := time.Duration(float64(base) * (1 - retryJitter))
			hi := time.Duration(float64(base) * (1 + retryJitter))
			if d < lo || d > hi {
				t.Fatalf("run %d, failure %d: delay %s outside [%s, %s]", run, n, d, lo, hi)
			}
			if r.failures != n {
				t.Fatalf("failures = %d, want %d", r.failures, n)
			}
			seen[d] = true
			base = min(base*retryMultiplier, retryCap)
		}
		if len(seen) < 5 {
			t.Fatalf("delays barely vary: %v", seen)
		}
		r.succeeded()
		if r.failures != 0 {
			t.Fatal("succeeded did not reset the failure count")
		}
		if d := r.failed(); d > time.Duration(float64(defaultRetryInitial)*(1+retryJitter)) {
			t.Fatalf("after a success the first delay is %s, want about %s", d, defaultRetryInitial)
		}
	}
}

func TestRetryJitterSpreadsDevices(t *testing.T) {
	// Two devices failing together should not retry in lock step.
	same := 0
	for i := 0; i < 20; i++ {
		a, b := newRetry(time.Minute, defaultRetryInitial), newRetry(time.Minute, defaultRetryInitial)
		a.failed()
		b.failed()
		if a.failed() == b.failed() {
			same++
		}
	}
	if same > 2 {
		t.Fatalf("%d of 20 pairs of devices retried at the same delay", same)
	}
}

func TestIsOffline(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"dial refused", fmt.Errorf("syncer: pass: list bucket: %w", refused), true},
		{"errno only", fmt.Errorf("x: %w", syscall.ECONNREFUSED), true},
		{"dns", &net.DNSError{Err: "no such host", Name: "s3.example", IsNotFound: true}, true},
		{"timeout", fmt.Errorf("wrapped: %w", os.ErrDeadlineExceeded), true},
		// the engine reads rclone's untyped errors; the daemon never parses text
		{"chain lost, message kept", errors.New(`RequestError: send request failed caused by: Get "http://127.0.0.1:1/b": dial tcp 127.0.0.1:1: connect: connection refused`), false},
		{"the engine's verdict", fmt.Errorf("syncer: pass: %w: %w", syncer.ErrOffline, errors.New("dial tcp: connection refused")), true},
		{"cancelled", fmt.Errorf("syncer: pass: %w", context.Canceled), false},
		{"max delete", fmt.Errorf("syncer: pass: %w", syncer.ErrMaxDeleteExceeded), false},
		{"access denied", errors.New("AccessDenied: Access Denied status code: 403"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isOffline(tt.err); got != tt.want {
				t.Errorf("isOffline(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestHoldFor(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		err        error
		reason     ipc.Code
		needsForce bool
		deletes    int
		files      int
		side       string
		mention    string
	}{
		{"max delete with counts", fmt.Errorf("bisync: %w", &syncer.MaxDeleteError{Deletes: 30, Total: 100, Side: syncer.SideLocal, Percent: 25}),
			ipc.HoldMaxDelete, true, 30, 100, ipc.SideLocal, "bm-agent sync --force"},
		{"max delete in the bucket", fmt.Errorf("bisync: %w", &syncer.MaxDeleteError{Deletes: 7, Total: 9, Side: syncer.SideCloud}),
			ipc.HoldMaxDelete, true, 7, 9, ipc.SideCloud, "in the bucket (7 of 9 files)"},
		{"max delete's text is not parsed", fmt.Errorf("bisync: %w: too many deletes (>25%%, 30 of 100) on Path1", syncer.ErrMaxDeleteExceeded),
			ipc.HoldMaxDelete, true, 0, 0, "", "bm-agent sync --force"},
		{"max delete without counts", fmt.Errorf("bisync: %w: too many deletes", syncer.ErrMaxDeleteExceeded),
			ipc.HoldMaxDelete, true, 0, 0, "", "balanced profile"},
		{"all changed", fmt.Errorf("x: %w", syncer.ErrAllFilesChanged), ipc.HoldAllFilesChanged, true, 0, 0, "", "--force"},
		{"missing", fmt.Errorf("x: %w", syncer.ErrLocalRootMissing), ipc.HoldLocalMissing, false, 0, 0, "", "/notes"},
		{"empty", fmt.Errorf("x: %w", syncer.ErrLocalRootEmpty), ipc.HoldLocalEmpty, false, 0, 0, "", "--resync"},
		{"resync", fmt.Errorf("x: %w", syncer.ErrResyncRequired), ipc.HoldResyncRequired, false, 0, 0, "", "--resync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := holdFor(tt.err, "/notes", "balanced", now)
			if h == nil {
				t.Fatal("no hold")
			}
			if h.Reason != tt.reason || h.NeedsForce != tt.needsForce || h.Deletes != tt.deletes || h.Files != tt.files || h.Side != tt.side {
				t.Errorf("hold = %+v", h)
			}
			if !h.Since.Equal(now) {
				t.Errorf("since = %s", h.Since)
			}
			if !contains(h.Message, tt.mention) {
				t.Errorf("message %q does not mention %q", h.Message, tt.mention)
			}
		})
	}
	if h := holdFor(errors.New("boom"), "/n", "fast", now); h != nil {
		t.Errorf("plain error gave a hold: %+v", h)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
