package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestWriteStatusGolden(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   ipc.Status
	}{
		{"logged_out", ipc.Status{State: "logged_out", Folder: "/home/me/basic-memory", KeyringBackend: "file"}},
		{"idle", ipc.Status{
			State: "idle", LoggedIn: true, Account: "me@example.com", TenantID: "t-1", Bucket: "basic-memory-t-1",
			Folder: "/home/me/basic-memory", KeyringBackend: "keyring",
			LastSync: &ipc.PassSummary{Start: now.Add(-42 * time.Second), DurationMS: 1234, Trigger: "watch", Uploaded: 2, Downloaded: 1},
		}},
		{"failed_paused", ipc.Status{
			State: "paused", Error: "", LoggedIn: true, Account: "me@example.com", TenantID: "t-1", Bucket: "b", Folder: "/n", Paused: true,
			LastSync: &ipc.PassSummary{Start: now.Add(-time.Hour), DurationMS: 10, Trigger: "interval", Error: "local folder missing"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			writeStatus(&buf, tt.st, now)
			golden := filepath.Join("testdata", "status_"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("got:\n%s\nwant:\n%s", buf.Bytes(), want)
			}
		})
	}
}
