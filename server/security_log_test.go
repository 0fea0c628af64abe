package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// TestSecurityAnonymousLogLines: a flood of unauthenticated requests
// writes a bounded number of log lines (and a summary of those left out),
// while authenticated requests are all logged. Before, each wrote two
// lines: 42 MB a minute under the guessing run.
func TestSecurityAnonymousLogLines(t *testing.T) {
	r := serve(t, nil)
	token := login(t, r.Server, demoEmail, demoPassword)
	before := len(r.logs.String())
	const d = 3 * time.Second
	start := time.Now()
	counts := flood("127.0.12.1", 8, d, func(c *http.Client) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, r.URL()+tenantapi.PathMountInfo, nil)
		req.Header.Set("Authorization", "Bearer forged.token.value")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	})
	took := time.Since(start)
	logged := r.logs.String()[before:]
	lines := strings.Count(logged, "\n")
	requests := total(counts)
	// The burst, the rate over the flood, the summary lines.
	bound := 10*DefaultAnonLogPerSecond + int(DefaultAnonLogPerSecond*took.Seconds()) + 5
	if counts[http.StatusUnauthorized] != requests {
		t.Fatalf("answers %v, want every one 401", counts)
	}
	if lines > bound {
		t.Errorf("%d unauthenticated requests wrote %d log lines, want at most %d", requests, lines, bound)
	}
	if !strings.Contains(logged, `"msg":"log lines suppressed"`) {
		t.Error("no summary of the lines left out")
	}
	if strings.Contains(logged, "forged.token.value") {
		t.Error("a token reached the log")
	}
	perLine := float64(len(logged)) / float64(max(lines, 1))
	unbounded := float64(len(logged)) + float64(r.anonLog.Suppressed())*perLine
	t.Logf("FIGURE log: %d unauthenticated requests in %s wrote %d lines, %.0f KB (%.1f MB a minute at that rate; %.1f MB a minute without the bound)",
		requests, took.Round(time.Millisecond), lines, float64(len(logged))/1e3,
		float64(len(logged))/took.Minutes()/1e6, unbounded/took.Minutes()/1e6)

	// Authenticated requests are all logged, flood or not.
	mark := len(r.logs.String())
	for range 30 {
		if resp, _ := get(t, r.URL()+tenantapi.PathMountInfo, token, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("mount info: %d", resp.StatusCode)
		}
	}
	if n := strings.Count(r.logs.String()[mark:], `"msg":"request"`); n != 30 {
		t.Errorf("30 authenticated requests, %d request lines", n)
	}
}
