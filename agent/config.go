package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// Config is the daemon's configuration: each setting resolved from its
// layers by [ResolveConfig] (flags, environment, the agent's config file,
// Basic Memory's, defaults), or the agent's config file alone ([LoadConfig]).
type Config struct {
	// Home holds the agent's config, state, history and bisync work dirs
	// (env BM_AGENT_HOME; default the user config dir's bm-agent).
	Home string `json:"-"`
	// Folder is the notes folder kept in step with the bucket.
	Folder string `json:"folder"`
	// CloudHost is the tenant API base URL; CloudDomain the OAuth issuer.
	CloudHost   string `json:"cloud_host,omitempty"`
	CloudDomain string `json:"cloud_domain,omitempty"`
	ClientID    string `json:"cloud_client_id,omitempty"`
	// Interval between passes when nothing triggers one (default 60 s).
	Interval Duration `json:"interval,omitempty"`
	// Debounce is the quiet delay after a change (default 1 s); MaxWait the
	// longest a burst of changes delays a pass (default 10 s).
	Debounce Duration `json:"debounce,omitempty"`
	MaxWait  Duration `json:"max_wait,omitempty"`
	// Device names this machine in conflict files and key descriptions.
	Device string `json:"device,omitempty"`
	// DeviceName is the name the person gave this device (`config set
	// device_name`); when set it is the Device (conflict files carry a
	// file-name-safe slug of it).
	DeviceName string `json:"device_name,omitempty"`
	// Notifications: "off" turns the tray's desktop notifications off
	// (the tray reads it before each one); "" or "on" leaves them on.
	Notifications string `json:"notifications,omitempty"`
	// Profile is the sync profile of normal passes: "safe", "balanced"
	// (the default) or "fast"; `bm-agent sync --profile` overrides it for
	// one pass.
	Profile string `json:"profile,omitempty"`
	// VersionsDays is how long replaced and deleted versions of notes are
	// kept (nil: DefaultVersionsDays; 0: versions are off).
	VersionsDays *int `json:"versions_days,omitempty"`
	// VersionsMaxMB caps each version store (this device's, the bucket's)
	// in MB; the oldest versions go first (0: DefaultVersionsMaxMB).
	VersionsMaxMB int `json:"versions_max_mb,omitempty"`
	// SocketPath is where the local API listens.
	SocketPath string `json:"-"`
	// Sources says where each setting's value came from (set by
	// [ResolveConfig]; nil otherwise). Treat it as read-only: it is shared
	// by copies.
	Sources map[string]Origin `json:"-"`
	// Warnings are what [ResolveConfig] skipped (an unreadable Basic Memory
	// config.json), for the log.
	Warnings []string `json:"-"`
}

// Defaults of the version stores.
const (
	DefaultVersionsDays  = 30
	DefaultVersionsMaxMB = 1024
)

// versionsDays is the number of days versions are kept (0: off).
func (c Config) versionsDays() int {
	if c.VersionsDays == nil {
		return DefaultVersionsDays
	}
	return max(*c.VersionsDays, 0)
}

// versionsMaxBytes is each version store's cap in bytes.
func (c Config) versionsMaxBytes() int64 {
	mb := c.VersionsMaxMB
	if mb <= 0 {
		mb = DefaultVersionsMaxMB
	}
	return int64(mb) << 20
}

// Sync profiles (see SPEC-8): how conflicts are resolved and how many
// deletes a pass may make.
const (
	ProfileSafe     = "safe"
	ProfileBalanced = "balanced"
	ProfileFast     = "fast"
)

// validProfile reports whether p names a profile.
func validProfile(p string) bool {
	return p == ProfileSafe || p == ProfileBalanced || p == ProfileFast
}

// Duration is a time.Duration that reads and writes as "60s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "60s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(time.Duration(n * float64(time.Second)))
	return nil
}

// DefaultHome is $BM_AGENT_HOME, else the user config dir's bm-agent.
func DefaultHome() string {
	if h := os.Getenv(EnvHome); h != "" {
		return h
	}
	return defaultHome()
}

// defaultHome is the user config dir's bm-agent.
func defaultHome() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "bm-agent")
	}
	return ".bm-agent"
}

// DefaultFolder is ~/basic-memory.
func DefaultFolder() string {
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, "basic-memory")
	}
	return "basic-memory"
}

// LoadConfig reads home/config.json; a missing file gives the defaults.
func LoadConfig(home string) (Config, error) {
	c := Config{Home: home}
	b, err := os.ReadFile(filepath.Join(home, "config.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return c, fmt.Errorf("load config: %w", err)
	default:
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("load config %s: %w", filepath.Join(home, "config.json"), err)
		}
	}
	c.Home = home
	return c, nil
}

// withDefaults fills what is unset.
func (c Config) withDefaults() Config {
	if c.Folder == "" {
		c.Folder = DefaultFolder()
	}
	if c.Interval <= 0 {
		c.Interval = Duration(60 * time.Second)
	}
	if c.Debounce <= 0 {
		c.Debounce = Duration(time.Second)
	}
	if c.MaxWait <= 0 {
		c.MaxWait = Duration(10 * time.Second)
	}
	if c.Profile == "" {
		c.Profile = ProfileBalanced
	}
	if c.DeviceName != "" {
		c.Device = c.DeviceName
	}
	if c.Device == "" {
		c.Device, _ = os.Hostname()
		if c.Device == "" {
			c.Device = "device"
		}
	}
	return c
}

// Save writes the config file (0600).
func (c Config) Save() error {
	if err := os.MkdirAll(c.Home, 0o700); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(c.Home, "config.json"), b, 0o600)
}
