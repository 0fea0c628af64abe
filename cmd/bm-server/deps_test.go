package main

import (
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// TestLinksNoTestSupport fails if bm-server links a test-support package of
// this module: the scripted browser (server/issuer/issuertest), a stand-in
// server (miniotest, pgtest, s3test, storagetest), the end-to-end harness.
func TestLinksNoTestSupport(t *testing.T) {
	gobin, err := exec.LookPath("go")
	testenv.Require(t, "the go command", err)
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/basicmachines-co/bm-agent/"
	linked := 0
	for _, p := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(p, module)
		if !ok {
			continue
		}
		linked++
		if strings.HasSuffix(path.Base(rel), "test") || rel == "e2e" || strings.HasPrefix(rel, "e2e/") {
			t.Errorf("bm-server links %s, a test-support package", rel)
		}
	}
	if linked < 5 {
		t.Fatalf("only %d packages of the module in bm-server's deps: the listing is wrong", linked)
	}
}
