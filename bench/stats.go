package bench

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// Latency is a set of samples from a change to where it shows, in
// seconds; Missed counts those that did not show within Timeout.
type Latency struct {
	Samples []float64 `json:"samples_s"`
	Missed  int       `json:"missed,omitempty"`
	Timeout float64   `json:"timeout_s,omitempty"`
	P50     Num       `json:"p50_s"`
	P95     Num       `json:"p95_s"`
	Max     Num       `json:"max_s"`
}

// Num is a figure that may be unknown (NaN) or beyond a timeout (+Inf);
// JSON has neither, so both are written as null.
type Num float64

// MarshalJSON writes n, or null when it is not finite.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// Known reports whether n is a finite figure.
func (n Num) Known() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

// add records one sample (ok false: it did not show within timeout).
func (l *Latency) add(d time.Duration, ok bool, timeout time.Duration) {
	l.Timeout = timeout.Seconds()
	if !ok {
		l.Missed++
		return
	}
	l.Samples = append(l.Samples, d.Seconds())
}

// finish computes the quantiles; a missed sample counts as +Inf, so a
// quantile that falls on one is +Inf ("more than the timeout").
func (l *Latency) finish() {
	all := slices.Clone(l.Samples)
	for range l.Missed {
		all = append(all, math.Inf(1))
	}
	l.P50, l.P95, l.Max = Num(Quantile(all, 0.50)), Num(Quantile(all, 0.95)), Num(Quantile(all, 1))
}

// N is the number of samples taken, shown or not.
func (l *Latency) N() int { return len(l.Samples) + l.Missed }

// Quantile is the q-quantile of xs by the nearest-rank method (NaN for
// no samples).
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Median is the 0.5-quantile.
func Median(xs []float64) float64 { return Quantile(xs, 0.5) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
