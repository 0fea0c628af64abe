package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// resolveDaemon is a fakeDaemon that settles conflicts of one note, a.md
// (conflict file a.conflict-20261202-101500-laptop.md), and records the
// requests.
type resolveDaemon struct {
	*fakeDaemon
	mu   sync.Mutex
	reqs []ipc.ResolveRequest
}

const testConflict = "a.conflict-20261202-101500-laptop.md"

func (r *resolveDaemon) Resolve(_ context.Context, req ipc.ResolveRequest) (ipc.ResolveResult, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	switch {
	case req.Path == "../x.md":
		return ipc.ResolveResult{}, fmt.Errorf("resolve: %w: not a path inside the notes folder", ipc.ErrInvalid)
	case req.Path != "a.md" && req.Path != testConflict:
		return ipc.ResolveResult{}, fmt.Errorf("resolve: %w: %s has no conflict file", ipc.ErrNotFound, req.Path)
	}
	res := ipc.ResolveResult{Folder: "/n", Note: "a.md", Removed: []string{testConflict}}
	if req.Keep == ipc.KeepBoth {
		res.Kept, res.Removed = "a (from laptop).md", []string{}
	}
	return res, nil
}

func TestResolveCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		json     bool
		wantCode int
		wantOut  []string
		wantReq  *ipc.ResolveRequest
	}{
		{name: "mine", args: []string{"resolve", "a.md", "--keep", "mine"},
			wantOut: []string{"Kept this device's version of a.md.", "Removed " + testConflict, "bm-agent versions a.md", "other devices"},
			wantReq: &ipc.ResolveRequest{Path: "a.md", Keep: ipc.KeepMine}},
		{name: "theirs by conflict file", args: []string{"resolve", testConflict, "--keep", "theirs"},
			wantOut: []string{"a.md now has the other version."},
			wantReq: &ipc.ResolveRequest{Path: testConflict, Keep: ipc.KeepTheirs}},
		{name: "both with --conflict", args: []string{"resolve", "a.md", "--keep", "both", "--conflict", testConflict},
			wantOut: []string{"Kept both: a.md stays, and the other version is now a (from laptop).md."},
			wantReq: &ipc.ResolveRequest{Path: "a.md", Conflict: testConflict, Keep: ipc.KeepBoth}},
		{name: "json", args: []string{"resolve", "a.md", "--keep", "mine"}, json: true,
			wantOut: []string{`"note": "a.md"`, `"removed": [`},
			wantReq: &ipc.ResolveRequest{Path: "a.md", Keep: ipc.KeepMine}},
		{name: "no --keep", args: []string{"resolve", "a.md"}, wantCode: ExitUsage},
		{name: "bad --keep", args: []string{"resolve", "a.md", "--keep", "newest"}, wantCode: ExitUsage},
		{name: "no path", args: []string{"resolve", "--keep", "mine"}, wantCode: ExitUsage},
		{name: "no such conflict", args: []string{"resolve", "b.md", "--keep", "mine"}, wantCode: ExitError,
			wantReq: &ipc.ResolveRequest{Path: "b.md", Keep: ipc.KeepMine}},
		{name: "outside the folder", args: []string{"resolve", "../x.md", "--keep", "mine"}, wantCode: ExitUsage,
			wantReq: &ipc.ResolveRequest{Path: "../x.md", Keep: ipc.KeepMine}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // outside the folder: paths are the folder's
			f := &resolveDaemon{fakeDaemon: &fakeDaemon{status: ipc.Status{State: ipc.StateIdle, Folder: "/n"}}}
			args := tt.args
			if tt.json {
				args = append(args, "--json")
			}
			sock := socketPath(t)
			serve(t, sock, f)
			out, errOut, code := runCLI(t.Context(), t, sock, nil, args...)
			if code != tt.wantCode {
				t.Fatalf("exit code = %d, want %d; stderr: %s", code, tt.wantCode, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tt.json && code == 0 {
				var res ipc.ResolveResult
				if err := json.Unmarshal([]byte(out), &res); err != nil || res.Note != "a.md" {
					t.Errorf("--json output %q: %v", out, err)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			switch {
			case tt.wantReq == nil && len(f.reqs) > 0:
				t.Errorf("a refused command line reached the daemon: %+v", f.reqs)
			case tt.wantReq != nil && (len(f.reqs) != 1 || f.reqs[0] != *tt.wantReq):
				t.Errorf("requests = %+v, want %+v", f.reqs, *tt.wantReq)
			}
		})
	}
}
