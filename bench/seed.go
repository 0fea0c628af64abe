package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// SeedFilters is the seed's default filter file
// (~/.basic-memory/bisync-filters.txt in SPEC-8).
const SeedFilters = `- .DS_Store
- .git/**
- __pycache__/**
- *.pyc
- .pytest_cache/**
- node_modules/**
- .conflict-*
- Thumbs.db
- desktop.ini
`

// checkFile is what --check-access looks for on both sides.
const (
	checkFile     = "RCLONE_TEST"
	checkFileBody = "rclone bisync check file\n"
)

// seedRemote is the name of the rclone remote the seed's commands use; it
// is configured in the environment (RCLONE_CONFIG_SEED_*), so no secret
// reaches a command line or a file.
const seedRemote = "seed"

// Rclone runs the rclone CLI as a fresh process per pass, the way the seed
// does, against one bucket through the counting proxy.
type Rclone struct {
	Bin    string // the rclone binary
	Local  string // the notes folder
	Bucket string
	Dir    string // its config, cache, workdirs and log
	env    []string
	key    string // the access key it signs with
}

// NewRclone sets up r's remote for creds (whose endpoint is the proxy),
// its filter file and the check file (--check-access) in the folder; the
// bucket needs one too.
func NewRclone(bin, local, dir string, creds tenantapi.MountCredentials) (*Rclone, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "bisync-filters.txt"), []byte(SeedFilters), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(local, checkFile), []byte(checkFileBody), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "rclone.conf"), nil, 0o600); err != nil {
		return nil, err
	}
	p := "RCLONE_CONFIG_" + strings.ToUpper(seedRemote) + "_"
	env := append(os.Environ(),
		"RCLONE_CONFIG="+filepath.Join(dir, "rclone.conf"),
		"RCLONE_CACHE_DIR="+filepath.Join(dir, "cache"),
		p+"TYPE=s3",
		p+"PROVIDER=Other",
		p+"ENDPOINT="+creds.EndpointURL,
		p+"REGION="+creds.Region,
		p+"ACCESS_KEY_ID="+creds.AccessKey,
		p+"SECRET_ACCESS_KEY="+creds.SecretKey,
		p+"FORCE_PATH_STYLE=true",
		// A bucket-scoped key may not create its bucket.
		p+"NO_CHECK_BUCKET=true",
	)
	return &Rclone{Bin: bin, Local: local, Bucket: creds.BucketName, Dir: dir, env: env, key: creds.AccessKey}, nil
}

// SeedArgs is the seed's command: rclone bisync with SPEC-8's balanced
// profile (conflict_resolve newer, max_delete 25, check_access), its
// filter file and workdir.
func (r *Rclone) SeedArgs(resync bool) []string {
	args := []string{"bisync", r.Local, seedRemote + ":" + r.Bucket,
		"--create-empty-src-dirs",
		"--resilient",
		"--conflict-resolve=newer",
		"--max-delete=25",
		"--filters-file", filepath.Join(r.Dir, "bisync-filters.txt"),
		"--check-access",
		"--workdir", filepath.Join(r.Dir, "work-seed"),
	}
	if resync {
		args = append(args, "--resync")
	}
	return args
}

// FastListArgs is the no-change comparison: rclone bisync --fast-list
// --use-server-modtime, with a workdir of its own (its listings hold
// server times, the seed's hold file times).
func (r *Rclone) FastListArgs(resync bool) []string {
	args := []string{"bisync", r.Local, seedRemote + ":" + r.Bucket,
		"--fast-list", "--use-server-modtime",
		"--workdir", filepath.Join(r.Dir, "work-fastlist"),
	}
	if resync {
		args = append(args, "--resync")
	}
	return args
}

// ProcRun is one run of a fresh process: wall time, CPU time and peak
// resident memory (from its rusage).
type ProcRun struct {
	Wall time.Duration
	CPU  time.Duration
	// PeakRSS in bytes.
	PeakRSS int64
}

// Run runs rclone with args, its output appended to Dir/rclone.log.
func (r *Rclone) Run(ctx context.Context, args ...string) (ProcRun, error) {
	logf, err := os.OpenFile(filepath.Join(r.Dir, "rclone.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return ProcRun{}, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- %s rclone %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, r.Bin, args...)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	run := ProcRun{Wall: time.Since(start)}
	if ps := cmd.ProcessState; ps != nil {
		run.CPU = ps.UserTime() + ps.SystemTime()
		run.PeakRSS = peakRSS(ps)
	}
	if err != nil {
		return run, fmt.Errorf("rclone %s: %w (see %s)", strings.Join(args[:1], " "), err, logf.Name())
	}
	return run, nil
}

// CommandLine is args as a person would type them, with the paths and
// the bucket shortened.
func (r *Rclone) CommandLine(args []string) string {
	s := "rclone " + strings.Join(args, " ")
	s = strings.ReplaceAll(s, filepath.Join(r.Dir, "bisync-filters.txt"), "~/.basic-memory/bisync-filters.txt")
	s = strings.ReplaceAll(s, r.Dir+string(filepath.Separator), "DIR/")
	s = strings.ReplaceAll(s, r.Local, "~/basic-memory")
	return strings.ReplaceAll(s, r.Bucket, "BUCKET")
}
