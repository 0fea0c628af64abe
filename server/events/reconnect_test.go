package events

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestWriteReconnect(t *testing.T) {
	tests := []struct {
		name  string
		retry time.Duration
		want  string
	}{
		{"given", 250 * time.Millisecond, "retry: 250\nevent: reconnect\ndata: {\"reason\":\"shutdown\"}\n\n"},
		{"default", 0, "retry: 1000\nevent: reconnect\ndata: {\"reason\":\"shutdown\"}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := WriteReconnect(rec, tt.retry); err != nil {
				t.Fatal(err)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("wrote %q, want %q", got, tt.want)
			}
			if !rec.Flushed {
				t.Error("not flushed")
			}
		})
	}
}
