package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkS3GetKeyCache measures a GetObject of a small note from the
// embedded S3 endpoint with the key cache (the default) and without it
// (every request asks SQLite for the key), in the same run, and logs the
// ratio of each pair:
//
//   - handler: the endpoint's handler called in process with a presigned
//     request, no network and no client: the server's own cost (SigV4
//     verification, the key check, the read);
//   - sdk-serial: an aws-sdk-go-v2 client over loopback, one request at a
//     time;
//   - sdk-parallel-16: the same with about 16 requests at once.
//
// It is a measurement, not a test: nothing about the figures is asserted.
// Loopback figures move with whatever else the machine runs; compare the
// two halves of a pair, which run back to back, or see
// BenchmarkS3GetKeyCacheInterleaved.
//
//	go test -run '^$' -bench S3GetKeyCache -v ./server/
func BenchmarkS3GetKeyCache(b *testing.B) {
	for _, mode := range []string{"handler", "sdk-serial", "sdk-parallel-16"} {
		b.Run(mode, func(b *testing.B) {
			nsPerOp := map[string]float64{}
			for _, cache := range []string{"cache", "no-cache"} {
				b.Run(cache, func(b *testing.B) {
					nsPerOp[cache] = benchS3Get(b, mode, cache == "cache")
				})
			}
			if c, n := nsPerOp["cache"], nsPerOp["no-cache"]; c > 0 && n > 0 {
				b.Logf("%s: S3 GET %.0f ns/op with the key cache, %.0f ns/op without: without/with = %.2fx", mode, c, n, n/c)
			}
		})
	}
}

// BenchmarkS3GetKeyCacheInterleaved is the handler pair of
// BenchmarkS3GetKeyCache with the two servers (key cache on, off) asked
// in turn, one request each per iteration, so that a machine busy with
// other work slows both alike. It reports each one's ns per GET and
// their ratio.
func BenchmarkS3GetKeyCacheInterleaved(b *testing.B) {
	var hs [2]http.Handler
	var urls [2]string
	for i, cache := range []bool{true, false} {
		r := serve(b, func(c *Config) {
			c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
			if !cache {
				c.KeyCacheTTL = -1
			}
		})
		mc := mint(b, r, login(b, r.Server, demoEmail, demoPassword))
		client := s3Client(mc)
		ctx := context.Background()
		in := &s3.GetObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String("note.md")}
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: strings.NewReader("# a note\n\nof a few words.\n")}); err != nil {
			b.Fatal(err)
		}
		signed, err := s3.NewPresignClient(client).PresignGetObject(ctx, in, s3.WithPresignExpires(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		hs[i], urls[i] = r.S3().Handler(), signed.URL
	}
	var took [2]time.Duration
	get := func(i int) {
		t0 := time.Now()
		w := httptest.NewRecorder()
		hs[i].ServeHTTP(w, httptest.NewRequest(http.MethodGet, urls[i], nil))
		took[i] += time.Since(t0)
		if w.Code != http.StatusOK {
			b.Fatalf("GET = %d %s", w.Code, w.Body)
		}
	}
	get(0) // warm the cache
	get(1)
	took = [2]time.Duration{}
	n := 0
	for b.Loop() {
		get(n % 2) // alternate which goes first
		get((n + 1) % 2)
		n++
	}
	c, nc := float64(took[0].Nanoseconds())/float64(n), float64(took[1].Nanoseconds())/float64(n)
	b.ReportMetric(c, "cache-ns/GET")
	b.ReportMetric(nc, "no-cache-ns/GET")
	b.ReportMetric(nc/c, "without/with")
	b.Logf("interleaved handler: S3 GET %.0f ns with the key cache, %.0f ns without: without/with = %.2fx (%d each)", c, nc, nc/c, n)
}

// benchS3Get runs one half of a pair and returns its ns/op.
func benchS3Get(b *testing.B, mode string, cache bool) float64 {
	r := serve(b, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		if !cache {
			c.KeyCacheTTL = -1
		}
	})
	token := login(b, r.Server, demoEmail, demoPassword)
	mc := mint(b, r, token)
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := s3.New(s3Client(mc).Options(), func(o *s3.Options) { o.HTTPClient = &http.Client{Transport: tr} })
	ctx := context.Background()
	in := &s3.GetObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String("note.md")}
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: in.Bucket, Key: in.Key, Body: strings.NewReader("# a note\n\nof a few words.\n")}); err != nil {
		b.Fatal(err)
	}
	get := func() {
		out, err := client.GetObject(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, out.Body)
		out.Body.Close()
	}
	get() // warm: the connection, and the cache where there is one

	switch mode {
	case "handler":
		signed, err := s3.NewPresignClient(client).PresignGetObject(ctx, in, s3.WithPresignExpires(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		h := r.S3().Handler()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, signed.URL, nil))
			if w.Code != http.StatusOK {
				b.Fatalf("GET = %d %s", w.Code, w.Body)
			}
		}
	case "sdk-serial":
		for b.Loop() {
			get()
		}
	default:
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism((16 + procs - 1) / procs)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				get()
			}
		})
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	if d := r.S3().Stats()["denied"]; d != 0 {
		b.Errorf("%d requests denied", d)
	}
	return ns
}
