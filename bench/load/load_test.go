package load

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
)

// TestLoadShort is the short form of `make bench-load` (issue 14), so that
// `make test` runs it: three replicas on one PostgreSQL and a distributed MinIO,
// 200 devices of 50 tenants for 15 s, one replica killed halfway. Every
// operation must succeed (after the client's retries, which move a killed
// replica's devices to the others) and every event posted must reach
// every other device of its tenant whose stream was open, whichever
// replica either was on. Its figures are printed, never asserted.
func TestLoadShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, MinIO and three bm-server replicas")
	}
	_, err := exec.LookPath("go")
	testenv.Require(t, "the go command", err)
	_, err = exec.LookPath("minio")
	testenv.Require(t, "MinIO", err)
	_, err = pgtest.BinDir()
	testenv.Require(t, "PostgreSQL", err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := t.TempDir()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", "github.com/basicmachines-co/bm-agent/cmd/bm-server").CombinedOutput(); err != nil {
		t.Fatalf("build bm-server: %v\n%s", err, out)
	}
	cfg := Short()
	cfg.Bin, cfg.Log = bin, testLog{t}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Print(&out)
	t.Log("\n" + out.String())
	if rep.Errors != 0 {
		t.Errorf("%d operations failed after retries: %v", rep.Errors, rep.FirstErrors)
	}
	if rep.Sent == 0 || rep.Owed == 0 {
		t.Fatalf("no events measured: %d sent, %d owed", rep.Sent, rep.Owed)
	}
	if rep.Lost != 0 {
		t.Errorf("%d of %d owed deliveries lost", rep.Lost, rep.Owed)
	}
	if rep.CrossReplica.N == 0 {
		t.Errorf("no event went from one replica to another")
	}
	if rep.Killed < 0 || rep.Reconnects == 0 {
		t.Errorf("the killed replica's devices did not reconnect: killed %d, %d streams reopened", rep.Killed, rep.Reconnects)
	}
	if rep.Resyncs != 0 {
		t.Errorf("%d of %d reopened streams were not resumed after their Last-Event-ID", rep.Resyncs, rep.Reconnects)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
