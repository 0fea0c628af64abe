package jitter

import (
	"testing"
	"time"
)

func TestSpread(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := Spread(time.Second)
		if d < 500*time.Millisecond || d >= 1500*time.Millisecond {
			t.Fatalf("Spread(1s) = %s, outside [0.5 s, 1.5 s)", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo < 500*time.Millisecond {
		t.Errorf("1000 draws spread over %s only", hi-lo)
	}
	if Spread(0) != 0 {
		t.Error("Spread(0) != 0")
	}
}
