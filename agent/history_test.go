package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func TestHistoryKeepsTheLastEntriesNewestFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	h := OpenHistory(path, 10)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 35; i++ {
		if err := h.Append(ipc.PassSummary{Start: t0.Add(time.Duration(i) * time.Minute), Uploaded: i}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.Last(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0].Uploaded != 34 || got[9].Uploaded != 25 {
		t.Fatalf("kept %d entries, first %d last %d", len(got), got[0].Uploaded, got[len(got)-1].Uploaded)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n >= 20 {
		t.Errorf("the file holds %d lines for a cap of 10: not compacted", n)
	}
	// A new History on the same file (a restart) sees the same entries.
	again, err := OpenHistory(path, 10).Last(3)
	if err != nil || len(again) != 3 || again[0].Uploaded != 34 {
		t.Fatalf("after reopen: %+v, %v", again, err)
	}
}

func TestHistorySurvivesATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	h := OpenHistory(path, 0)
	if err := h.Append(ipc.PassSummary{Trigger: "one"}); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of an append leaves half a line.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"start":"2026-01-01T00:00:00Z","trig`)
	f.Close()
	h = OpenHistory(path, 0)
	if err := h.Append(ipc.PassSummary{Trigger: "three"}); err != nil {
		t.Fatal(err)
	}
	got, err := h.Last(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Trigger != "three" || got[1].Trigger != "one" {
		t.Fatalf("history after a torn line = %+v", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("history file mode %v, want 0600", st.Mode().Perm())
	}
}
