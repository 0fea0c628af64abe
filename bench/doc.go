// Package bench is the benchmark of issue 12: bm-agent against the seed's
// command (`rclone bisync` with SPEC-8's balanced profile, a fresh process
// every 60 s) on the same trees, in the same run, on one bm-server.
//
// For each tree size it generates two identical deterministic trees of
// notes, starts bm-server (embedded S3) with a counting S3 reverse proxy
// in front of its S3 endpoint (the server hands the proxy out as the
// endpoint, so bm-agent and rclone both go through it; requests are
// counted by access key and class: LIST, GET, HEAD, PUT, DELETE, POST),
// and measures, through package e2e/harness (the real processes, the real
// OAuth pages): the first sync, the no-change pass (against `rclone bisync
// --fast-list --use-server-modtime` as a fresh process), local → bucket,
// device → device with two daemons, an object PUT by another S3 client →
// the folder, and the idle daemon's CPU, memory and requests. Figures are
// read, never asserted; the report puts each goal of issue 12 beside its
// figure, with the ratio to the seed and how noisy the machine was.
//
// cmd/bm-bench runs it (`make bench`, `make bench-short`); the rclone it
// runs is built from the module version go.mod requires (bench/rclone).
package bench
