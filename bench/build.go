package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	module       = "github.com/basicmachines-co/bm-agent"
	rcloneModule = "github.com/rclone/rclone"
)

// Build builds bm-agent, bm-server and the rclone CLI (package
// bench/rclone, at the rclone version go.mod requires) into dir, from the
// module the working directory is in. It returns rclone's version.
func Build(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out, err := goCmd(ctx, "list", "-m", "-f", "{{.Version}}", rcloneModule)
	if err != nil {
		return "", err
	}
	version := strings.TrimSpace(out)
	if _, err := goCmd(ctx, "build", "-o", dir+string(filepath.Separator), module+"/cmd/bm-agent", module+"/cmd/bm-server"); err != nil {
		return "", err
	}
	// rclone prints fs.Version: the tag with no "-DEV" suffix.
	ldflags := "-X " + rcloneModule + "/fs.VersionSuffix="
	if _, err := goCmd(ctx, "build", "-ldflags", ldflags, "-o", filepath.Join(dir, "rclone"), module+"/bench/rclone"); err != nil {
		return "", err
	}
	return version, nil
}

func goCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// gitState is the checkout's commit and whether files differ from it.
func gitState(ctx context.Context) (commit string, dirty bool) {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "", false
	}
	st, _ := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(st))) > 0
}
