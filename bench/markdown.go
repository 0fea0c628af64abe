package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// docModes are the runs docs/BENCHMARKS.md holds a section for, in order.
var docModes = []string{"bench", "bench-short"}

func beginMarker(mode string) string { return "<!-- bm-bench:" + mode + " -->" }
func endMarker(mode string) string   { return "<!-- /bm-bench:" + mode + " -->" }

// docTemplate is docs/BENCHMARKS.md before any run: how the figures are
// measured and reproduced, and a section per run that bm-bench fills in.
const docTemplate = `# Benchmarks

bm-agent against the seed's command, side by side on one bm-server, in one
run, as issue 12 asks. ` + "`make bench`" + ` runs 1,000, 10,000 and 50,000 notes;
` + "`make bench-short`" + ` runs 1,000 and 10,000 with fewer samples (meant to stay
under five minutes on two shared cores). Each replaces its own section below
and writes every sample to a JSON file (` + "`bin/bench.json`, `bin/bench-short.json`" + `).
CI runs the whole harness at 200 notes in ` + "`make test`" + ` (TestBenchShortRuns in
package bench), checking only that every figure is produced: the figures are
read, never asserted.

## Reproduce

` + "```" + `
make bench          # 1k, 10k, 50k notes; every figure at 10k and 50k
make bench-short    # 1k and 10k; every figure at 10k
go run ./cmd/bm-bench -h   # sizes, samples; -keep keeps the trees and logs
` + "```" + `

## How it is measured

` + "`cmd/bm-bench`" + ` (package ` + "`bench`" + `) builds bm-agent, bm-server and the rclone CLI
at the version go.mod requires (` + "`bench/rclone`" + `: rclone's own command line with
only bisync, lsf and version linked in, since rclone's full main imports
modules that are not in go.sum). For each size, on a fresh bm-server, it:

- generates two identical deterministic trees (100 notes a folder, 200 B to
  4 KiB of markdown each, fixed modification times): one for bm-agent, one
  for the seed, each syncing to the bucket of its own tenant;
- starts bm-server (SQLite, embedded S3, built-in issuer) through
  ` + "`e2e/harness`" + ` with a counting S3 reverse proxy on loopback in front of the S3
  endpoint: the server hands the proxy out as the endpoint, so bm-agent and
  rclone both go through it, and requests are counted by access key (that
  is, by client) and class (LIST, GET, HEAD, PUT, DELETE, POST); the
  harness's own reads and writes go past it;
- **first sync**: logs bm-agent in through the real OAuth pages and times
  its first sync, from the login (or its first pass, if earlier) to the end
  of its last pass before it is idle with the bucket holding the tree; peak
  RSS is the daemon's VmHWM. The seed's command runs with ` + "`--resync`" + `, its peak
  RSS from its rusage. The order alternates from size to size;
- runs the seed's command again with nothing to do and over one changed
  note (every run of the seed's command comes before the next step, which
  changes the folder's file times). bm-agent is paused meanwhile, so each
  has the machine to itself;
- **no-change pass**: gives ` + "`rclone bisync --fast-list --use-server-modtime`" + ` its
  baseline on the seed's folder and bucket (` + "`--resync --resync-mode path2`" + `:
  the folder's file times become the server's, which that command needs to
  see both sides alike, with no object rewritten), then alternates a
  bm-agent pass through its local API (what ` + "`bm-agent sync`" + ` does, timed from the
  request to the answer) with that command as a fresh process, and reports
  the medians;
- **local → bucket**: edits one note at a time in the daemon's folder and
  times it until the bucket returns the new content (polled every 25 ms),
  with the daemon's own time for the pass that uploaded it and the requests
  of each edit;
- **device → device**: starts a second daemon on the same account, its
  folder a copy of the first's (its first sync finds both sides alike), and
  times edits in the first folder until the second folder has them;
- **object PUT → folder**: writes new objects with another S3 client and
  times each until it is in the folder;
- **idle**: watches the idle daemon with change events live for a minute
  (half a minute in bench-short): CPU (utime + stime from /proc/PID/stat),
  resident memory (VmRSS), its S3 requests, its tenant API requests
  (bm-server's /metrics), its passes.

The seed's loop is a pass, sleep 60 s, repeat: a change waits U(0, 60 s) for
the next pass, then that pass. Its latencies are a model built on its pass
time over one changed note, measured in the same run: local → bucket and
object PUT → folder p50 30 s + pass, p95 57 s + pass, max 60 s + pass;
device → device (two such loops) p50 60 s + 2 passes, p95 101 s + 2 passes.
Its idle CPU is one no-change pass's CPU time a minute. These cells say
"(model)".

The noise line runs one CPU-bound loop at the start, after each size and at
the end and gives its spread, the load average, and how busy the CPUs were
and how much time the hypervisor stole over the run: on shared cores, read
the figures with it. Goals marked "met" compare the figure with the goal of
issue 12 as written (most goals name 10,000 or 50,000 notes; the table
applies them at every size).

`

// WriteDoc writes rep into the markdown file path: the section of its
// mode is replaced; the file is made from the template if it does not
// exist (or lacks the section).
func WriteDoc(path string, rep *Report) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = []byte(docTemplate), nil
	}
	if err != nil {
		return err
	}
	doc := string(b)
	for _, m := range append(docModes, rep.Mode) {
		if !strings.Contains(doc, beginMarker(m)) {
			doc = strings.TrimRight(doc, "\n") + fmt.Sprintf("\n\n## `make %s`\n\n%s\nNot run yet.\n%s\n", m, beginMarker(m), endMarker(m))
		}
	}
	i := strings.Index(doc, beginMarker(rep.Mode)) + len(beginMarker(rep.Mode))
	j := strings.Index(doc, endMarker(rep.Mode))
	if j < i {
		return fmt.Errorf("%s: the end of the %s section comes before its start", path, rep.Mode)
	}
	doc = doc[:i] + "\n" + rep.Markdown() + doc[j:]
	return os.WriteFile(path, []byte(doc), 0o644)
}
