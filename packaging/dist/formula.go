package dist

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

//go:embed templates/bm-agent.rb
var formulaText string

var formulaTmpl = template.Must(template.New("bm-agent.rb").Parse(formulaText))

// FormulaName is where the formula goes in Out.
const FormulaName = "homebrew/bm-agent.rb"

type formulaArch struct{ Brew, File, SHA256 string }

type formulaOS struct {
	Brew  string
	Archs []formulaArch
}

// brewNames are Homebrew's on_* blocks for the release's OSes and arches.
var brewNames = map[string]string{"darwin": "macos", "linux": "linux", "amd64": "intel", "arm64": "arm"}

// formula writes the Homebrew formula for the release's macOS (and Linux)
// archives, nil when it has none.
func formula(cfg Config, as []Artifact) (*Artifact, error) {
	var oses []formulaOS
	for _, goos := range []string{"darwin", "linux"} {
		o := formulaOS{Brew: brewNames[goos]}
		for _, a := range as {
			if a.Kind == "archive" && a.Target.OS == goos && brewNames[a.Target.Arch] != "" {
				o.Archs = append(o.Archs, formulaArch{Brew: brewNames[a.Target.Arch], File: filepath.Base(a.Path), SHA256: a.SHA256})
			}
		}
		if len(o.Archs) > 0 {
			oses = append(oses, o)
		}
	}
	if len(oses) == 0 || oses[0].Brew != "macos" {
		return nil, nil
	}
	var buf bytes.Buffer
	url := strings.ReplaceAll(cfg.FormulaURL, "{version}", cfg.Version)
	if err := formulaTmpl.Execute(&buf, map[string]any{"Version": cfg.Version, "URL": strings.TrimSuffix(url, "/"), "OSes": oses}); err != nil {
		return nil, fmt.Errorf("dist: formula: %w", err)
	}
	path := filepath.Join(cfg.Out, FormulaName)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("dist: formula: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("dist: formula: %w", err)
	}
	sum, err := sha256File(path)
	if err != nil {
		return nil, err
	}
	return &Artifact{Path: path, Kind: "formula", SHA256: sum}, nil
}
