package storage_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// TestLogger: a provider's records go to the injected logger with the
// provider's component, and nowhere (never slog.Default) without one.
func TestLogger(t *testing.T) {
	var def bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&def, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })

	for _, tt := range []struct {
		name     string
		injected bool
		want     string // in the injected logger's output
	}{
		{"injected", true, `msg="minted bucket key" component=storage/test`},
		{"none", false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			def.Reset()
			var buf bytes.Buffer
			var log *slog.Logger
			if tt.injected {
				log = slog.New(slog.NewTextHandler(&buf, nil))
			}
			storage.Logger(log, "storage/test").Info("minted bucket key")
			if !strings.Contains(buf.String(), tt.want) {
				t.Errorf("injected logger got %q, want %q in it", buf.String(), tt.want)
			}
			if def.Len() != 0 {
				t.Errorf("slog.Default got %q", def.String())
			}
		})
	}
}
