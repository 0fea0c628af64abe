package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// checkGolden compares got with testdata/name (rewritten with -update).
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestHistoryGolden(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	passes := []ipc.PassSummary{
		{Start: t0.Add(5 * time.Minute), DurationMS: 830, Trigger: "manual", Profile: "safe", DryRun: true,
			Plan: &ipc.Plan{Items: []ipc.PlanItem{{Action: "copy", Side: "cloud", Path: "a.md"}, {Action: "delete", Side: "local", Path: "b.md"}}}},
		{Start: t0.Add(4 * time.Minute), DurationMS: 2400, Trigger: "interval", Cancelled: true,
			Error: "cancelled: the daemon is stopping (the next pass recovers)"},
		{Start: t0.Add(3 * time.Minute), DurationMS: 40, Trigger: "retry", Offline: true,
			Error: "syncer: pass: list bucket: dial tcp 127.0.0.1:9000: connect: connection refused"},
		{Start: t0.Add(2 * time.Minute), DurationMS: 120, Trigger: "watch", Profile: "balanced",
			Error: "syncer: pass: bisync: too many deletes: a very long explanation that goes on and on past the width of the column"},
		{Start: t0.Add(time.Minute), DurationMS: 1250, Trigger: "manual", Profile: "balanced", Forced: true, DeletedRemote: 30, Uploaded: 1},
		{Start: t0, DurationMS: 15320, Trigger: "startup", Profile: "balanced", Resync: true, Uploaded: 1200, Downloaded: 3, Conflicts: 2},
		{Start: t0.Add(-time.Minute), DurationMS: 5, Trigger: "interval", Skipped: "both sides empty"},
	}
	tests := []struct {
		name   string
		passes []ipc.PassSummary
	}{
		{"history_empty", nil},
		{"history", passes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			writeHistory(&buf, tt.passes, time.UTC)
			checkGolden(t, tt.name+".golden", buf.Bytes())

			buf.Reset()
			if err := printJSON(&buf, ipc.History{Passes: tt.passes}); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.name+"_json.golden", buf.Bytes())
		})
	}
}

func TestConflictsGolden(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		cs   ipc.Conflicts
	}{
		{"conflicts_none", ipc.Conflicts{Folder: "/home/me/basic-memory"}},
		{"conflicts", ipc.Conflicts{Folder: "/home/me/basic-memory", Conflicts: []ipc.Conflict{
			{Path: "notes/plan.conflict-20261123-120000-laptop.md", Original: "notes/plan.md", Device: "laptop", From: "Ada's laptop", Time: t0, Size: 1834},
			{Path: "notes/plan.conflict-20261123-120000-cloud.md", Original: "notes/plan.md", Device: "cloud", From: "work desk", Time: t0, Size: 912},
			{Path: "notes/old.conflict-20261123-120000-cloud.md", Original: "notes/old.md", Device: "cloud", Time: t0, Size: 80},
			{Path: "my ideas/été.conflict-20261124-080910-work-pc.md", Original: "my ideas/été.md", Device: "work-pc", Time: t0.Add(20*time.Hour + 9*time.Minute + 10*time.Second), Size: 2_400_000},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			writeConflicts(&buf, tt.cs, time.UTC)
			checkGolden(t, tt.name+".golden", buf.Bytes())

			buf.Reset()
			if err := printJSON(&buf, tt.cs); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.name+"_json.golden", buf.Bytes())
		})
	}
}

func TestWritePlan(t *testing.T) {
	var buf bytes.Buffer
	writeSyncResult(&buf, ipc.PassSummary{DryRun: true, Plan: &ipc.Plan{Items: []ipc.PlanItem{
		{Action: "copy", Side: "cloud", Path: "new.md"},
		{Action: "delete", Side: "local", Path: "gone.md"},
		{Action: "conflict", Side: "both", Path: "both.md"},
		{Action: "copy", Side: "local", Path: "from-cloud.md"},
	}}})
	checkGolden(t, "sync_dry_run.golden", buf.Bytes())

	buf.Reset()
	writeSyncResult(&buf, ipc.PassSummary{DryRun: true, Plan: &ipc.Plan{}})
	if got, want := buf.String(), "Dry run: nothing would change.\n"; got != want {
		t.Errorf("empty plan: %q, want %q", got, want)
	}
}
