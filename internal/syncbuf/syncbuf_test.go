package syncbuf_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
)

func TestConcurrentWrites(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&b, "w%d\n", i)
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 800 {
		t.Errorf("lines = %d, want 800", got)
	}
	for i := range 8 {
		if got := strings.Count(b.String(), fmt.Sprintf("w%d\n", i)); got != 100 {
			t.Errorf("writer %d lines = %d, want 100", i, got)
		}
	}
}
