// Package packaging installs bm-agent as a per-user service that starts at
// login and restarts on failure (a systemd user unit on Linux, a launchd
// agent on macOS, a Windows service through kardianos/service), and bm-tray
// as a login item. On Linux without a user systemd (no session bus: a
// container, WSL) the agent starts at login through an XDG autostart entry
// instead, and is started now as a detached process. It also renders
// bm-server's systemd system unit for the packages (see packaging/dist).
// It renders the unit files from templates kept here so
// they can be checked (systemd-analyze verify) before anything is written.
package packaging

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
)

// ServiceName is the name of the agent's service on every platform.
const ServiceName = "bm-agent"

// Params describe one installation.
type Params struct {
	// AgentPath and TrayPath are absolute paths of the binaries.
	AgentPath string
	TrayPath  string
	// Home is the agent's config and state dir (BM_AGENT_HOME), Folder the
	// notes folder. Empty means the agent's defaults.
	Home   string
	Folder string
	// Env holds extra environment for the daemon (BASIC_MEMORY_CLOUD_HOST...).
	Env map[string]string
	// Icon is the tray's icon theme name for its desktop entry (the
	// packages install one); empty for none.
	Icon string
}

// ServerParams describe bm-server's systemd system unit.
type ServerParams struct {
	// ServerPath is the absolute path of bm-server.
	ServerPath string
}

//go:embed templates/*
var templates embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"quote":    systemdQuote,
	"xml":      xmlEscape,
	"desktop":  desktopQuote,
	"envpairs": envPairs,
}).ParseFS(templates, "templates/*"))

func (p Params) validate() error {
	if p.AgentPath == "" || !filepath.IsAbs(p.AgentPath) {
		return fmt.Errorf("packaging: the agent's path must be absolute, got %q", p.AgentPath)
	}
	for k := range p.Env {
		if k == "" || strings.ContainsAny(k, "= \n\"") {
			return fmt.Errorf("packaging: bad environment name %q", k)
		}
	}
	return nil
}

func render(name string, p Params) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return execute(name, p)
}

func execute(name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		return nil, fmt.Errorf("packaging: render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// SystemdUnit renders the systemd user unit for the agent.
func SystemdUnit(p Params) ([]byte, error) { return render("bm-agent.service", p) }

// ServerUnit renders bm-server's hardened systemd system unit: its own
// dynamic user, /var/lib/bm-server its only writable place, no
// privileges (`systemd-analyze security` scores it under 2).
func ServerUnit(p ServerParams) ([]byte, error) {
	if p.ServerPath == "" || !filepath.IsAbs(p.ServerPath) {
		return nil, fmt.Errorf("packaging: the server's path must be absolute, got %q", p.ServerPath)
	}
	return execute("bm-server.service", p)
}

// LaunchdPlist renders the launchd agent for the agent.
func LaunchdPlist(p Params) ([]byte, error) { return render("com.basicmemory.bm-agent.plist", p) }

// AgentDesktopEntry renders the XDG autostart entry that starts the agent
// (`bm-agent run`) at login where there is no user systemd.
func AgentDesktopEntry(p Params) ([]byte, error) { return render("bm-agent.desktop", p) }

// TrayDesktopEntry renders the XDG autostart entry that starts bm-tray at login.
func TrayDesktopEntry(p Params) ([]byte, error) {
	if p.TrayPath == "" || !filepath.IsAbs(p.TrayPath) {
		return nil, errors.New("packaging: the tray's path must be absolute")
	}
	return render("bm-tray.desktop", p)
}

// systemdQuote quotes a word for ExecStart= and Environment= lines.
func systemdQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	return `"` + r.Replace(s) + `"`
}

func xmlEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// desktopQuote quotes an argument of a desktop entry's Exec= key.
func desktopQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\\\`, `"`, `\\"`, "`", "\\\\`", "$", `\\$`, "%", "%%")
	return `"` + r.Replace(s) + `"`
}

type kv struct{ Key, Value string }

func envPairs(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	// Stable output: sorted by name.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Key < out[j-1].Key; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
