package agent

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Settings are resolved in one place, [ResolveConfig]. Each takes its value
// from the first of these layers that sets it:
//
//  1. a flag of `bm-agent run` (--home, --folder, --host, --domain,
//     --interval);
//  2. the environment: BM_AGENT_HOME, BASIC_MEMORY_CLOUD_HOST,
//     BASIC_MEMORY_CLOUD_DOMAIN, BASIC_MEMORY_CLOUD_CLIENT_ID;
//  3. bm-agent's own config.json, in its home (what `bm-agent config set`,
//     `login --server` and `setup --server` write);
//  4. Basic Memory's config.json (cloud_host, cloud_domain,
//     cloud_client_id only), in $BASIC_MEMORY_CONFIG_DIR, else
//     ~/.basic-memory, else $XDG_CONFIG_HOME/basic-memory;
//  5. the defaults; for the cloud, the Basic Memory cloud with the Basic
//     Memory CLI's own defaults (cloudapi.DefaultHost, DefaultDomain,
//     DefaultClientID), so that a Basic Memory user logs in with no flag.
//
// The three cloud settings go together: cloud_domain and cloud_client_id
// come only from the layer that set cloud_host or a higher one, so a server
// chosen with --host or `config set cloud_host` is never paired with the
// issuer another layer names for another cloud (Basic Memory's file always
// names its own, and the defaults name AuthKit). The one exception is the
// Basic Memory cloud's own host, wherever it is set: it keeps its own
// issuer and client id from the defaults. Without one, the domain is the
// host (bm-server is its own issuer) and the client id is bm-agent's.
// `config set cloud_host ""` removes a saved server: the default applies
// again.

// Source says which layer a setting's value came from.
type Source string

// The layers, highest precedence first.
const (
	SourceFlag        Source = "flag"         // a flag of `bm-agent run`
	SourceEnv         Source = "env"          // an environment variable
	SourceConfig      Source = "config"       // bm-agent's config.json
	SourceBasicMemory Source = "basic_memory" // Basic Memory's config.json
	SourceDefault     Source = "default"
)

// Origin says where one setting's value came from: its layer, and the flag,
// variable or file of that layer (for a default, what it derives from, if
// anything).
type Origin struct {
	Source Source `json:"source"`
	Name   string `json:"name,omitempty"`
}

func (o Origin) String() string {
	switch {
	case o.Source == SourceFlag:
		return "flag " + o.Name + " of `bm-agent run`"
	case o.Source == SourceDefault && o.Name != "":
		return "default: as " + o.Name
	case o.Name != "":
		return string(o.Source) + " " + o.Name
	}
	return string(o.Source)
}

// overrides reports whether o is a layer above bm-agent's config file (a
// value saved there does not apply while o sets the setting).
func (o Origin) overrides() bool { return o.Source == SourceFlag || o.Source == SourceEnv }

// EnvHome is the environment variable naming the agent's home.
const EnvHome = "BM_AGENT_HOME"

// setting is one key of the config file: how a layer sets it, and how
// `config set` parses it.
type setting struct {
	key string
	env string // its environment variable, if any
	// restart: a change applies only after the daemon restarts.
	restart bool
	isSet   func(c *Config) bool
	copy    func(dst, src *Config)
	// parse checks a `config set` value and sets it in c; errors wrap
	// ipc.ErrInvalid.
	parse func(c *Config, v string) error
}

// settings are the keys of the config file, in the order `config set`
// lists them.
var settings = []setting{
	{key: "folder", restart: true,
		isSet: func(c *Config) bool { return c.Folder != "" }, copy: func(d, s *Config) { d.Folder = s.Folder },
		parse: func(c *Config, v string) error { f, err := cleanFolder(v); c.Folder = f; return err }},
	{key: "interval",
		isSet: func(c *Config) bool { return c.Interval > 0 }, copy: func(d, s *Config) { d.Interval = s.Interval },
		parse: func(c *Config, v string) error { return parseDuration(&c.Interval, v, minInterval) }},
	{key: "debounce",
		isSet: func(c *Config) bool { return c.Debounce > 0 }, copy: func(d, s *Config) { d.Debounce = s.Debounce },
		parse: func(c *Config, v string) error { return parseDuration(&c.Debounce, v, 0) }},
	{key: "max_wait",
		isSet: func(c *Config) bool { return c.MaxWait > 0 }, copy: func(d, s *Config) { d.MaxWait = s.MaxWait },
		parse: func(c *Config, v string) error { return parseDuration(&c.MaxWait, v, 0) }},
	{key: "profile",
		isSet: func(c *Config) bool { return c.Profile != "" }, copy: func(d, s *Config) { d.Profile = s.Profile },
		parse: func(c *Config, v string) error {
			if !validProfile(v) {
				return fmt.Errorf("%w: %q: want safe, balanced or fast", ipc.ErrInvalid, v)
			}
			c.Profile = v
			return nil
		}},
	{key: "versions_days",
		isSet: func(c *Config) bool { return c.VersionsDays != nil }, copy: func(d, s *Config) { d.VersionsDays = s.VersionsDays },
		parse: func(c *Config, v string) error {
			n, err := parseInt(v, 0, 3650)
			c.VersionsDays = &n
			return err
		}},
	{key: "versions_max_mb",
		isSet: func(c *Config) bool { return c.VersionsMaxMB > 0 }, copy: func(d, s *Config) { d.VersionsMaxMB = s.VersionsMaxMB },
		parse: func(c *Config, v string) (err error) { c.VersionsMaxMB, err = parseInt(v, 1, 1<<20); return err }},
	{key: "device", restart: true,
		isSet: func(c *Config) bool { return c.Device != "" }, copy: func(d, s *Config) { d.Device = s.Device },
		parse: func(c *Config, v string) error { c.Device = v; return nil }},
	{key: "device_name", restart: true,
		isSet: func(c *Config) bool { return c.DeviceName != "" }, copy: func(d, s *Config) { d.DeviceName = s.DeviceName },
		parse: func(c *Config, v string) error { c.DeviceName = v; return nil }},
	{key: "notifications",
		isSet: func(c *Config) bool { return c.Notifications != "" }, copy: func(d, s *Config) { d.Notifications = s.Notifications },
		parse: func(c *Config, v string) error {
			v = strings.ToLower(v)
			if v != "" && v != "on" && v != "off" {
				return fmt.Errorf("%w: %q: want on or off", ipc.ErrInvalid, v)
			}
			c.Notifications = v
			return nil
		}},
	{key: "cloud_host", env: cloudapi.EnvHost, restart: true,
		isSet: func(c *Config) bool { return c.CloudHost != "" }, copy: func(d, s *Config) { d.CloudHost = s.CloudHost },
		parse: func(c *Config, v string) (err error) { c.CloudHost, err = parseURL(v); return err }},
	{key: "cloud_domain", env: cloudapi.EnvDomain, restart: true,
		isSet: func(c *Config) bool { return c.CloudDomain != "" }, copy: func(d, s *Config) { d.CloudDomain = s.CloudDomain },
		parse: func(c *Config, v string) (err error) { c.CloudDomain, err = parseURL(v); return err }},
	{key: "cloud_client_id", env: cloudapi.EnvClientID, restart: true,
		isSet: func(c *Config) bool { return c.ClientID != "" }, copy: func(d, s *Config) { d.ClientID = s.ClientID },
		parse: func(c *Config, v string) error { c.ClientID = v; return nil }},
}

// settingKeys is the list of keys for error messages.
func settingKeys() string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return strings.Join(keys, ", ")
}

// lookupSetting finds key, spelled in any case and with - or _.
func lookupSetting(key string) (setting, string, bool) {
	key = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(key)), "-", "_")
	for _, s := range settings {
		if s.key == key {
			return s, key, true
		}
	}
	return setting{}, key, false
}

func parseDuration(d *Duration, v string, lo time.Duration) error {
	dur, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%w: %q is not a duration (like 30s, 5m, 1h)", ipc.ErrInvalid, v)
	}
	if dur <= lo || dur > maxDuration {
		return fmt.Errorf("%w: %s is out of range (%s to %s)", ipc.ErrInvalid, dur, max(lo, time.Millisecond), maxDuration)
	}
	*d = Duration(dur)
	return nil
}

func parseInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%w: %q: want a whole number from %d to %d", ipc.ErrInvalid, v, lo, hi)
	}
	return n, nil
}

// parseURL accepts "" (unset: the next layer, or the default, applies) or
// a URL cloudapi.CheckURL accepts.
func parseURL(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if err := cloudapi.CheckURL(v); err != nil {
		return "", fmt.Errorf("%w: %v", ipc.ErrInvalid, err)
	}
	return strings.TrimRight(v, "/"), nil
}

// cleanFolder accepts an existing folder, given as an absolute path or
// one under ~/, and returns it cleaned.
func cleanFolder(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("%w: empty", ipc.ErrInvalid)
	}
	if rest, ok := strings.CutPrefix(v, "~"+string(filepath.Separator)); ok {
		if home, err := os.UserHomeDir(); err == nil {
			v = filepath.Join(home, rest)
		}
	}
	if !filepath.IsAbs(v) {
		return "", fmt.Errorf("%w: %q is not an absolute path", ipc.ErrInvalid, v)
	}
	v = filepath.Clean(v)
	fi, err := os.Stat(v)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%w: %s does not exist (create it first: mkdir -p %s)", ipc.ErrInvalid, v, v)
	case err != nil:
		return "", fmt.Errorf("%w: %v", ipc.ErrInvalid, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%w: %s is not a folder", ipc.ErrInvalid, v)
	}
	return v, nil
}

// Inputs are what [ResolveConfig] resolves from besides the files.
type Inputs struct {
	// Flags holds the values given as flags; FlagNames names the flag of
	// each setting given (key "folder" → "--folder"), the only ones taken
	// from Flags. The key "home" is the home dir (Flags.Home).
	Flags     Config
	FlagNames map[string]string
	// Getenv reads the environment (nil: os.Getenv).
	Getenv func(string) string
}

// ResolveConfig resolves every setting from its layers (see [Source]: flag >
// environment > bm-agent's config.json > Basic Memory's config.json >
// default) and records in Config.Sources where each came from. A Basic
// Memory config.json that cannot be read is skipped, and said in
// Config.Warnings; bm-agent's own unreadable config is an error.
func ResolveConfig(in Inputs) (Config, error) {
	var cfg Config
	getenv := in.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	sources := map[string]Origin{}

	// The home first: it holds the config file.
	switch {
	case in.FlagNames["home"] != "" && in.Flags.Home != "":
		cfg.Home, sources["home"] = in.Flags.Home, Origin{SourceFlag, in.FlagNames["home"]}
	case getenv(EnvHome) != "":
		cfg.Home, sources["home"] = getenv(EnvHome), Origin{SourceEnv, EnvHome}
	default:
		cfg.Home, sources["home"] = defaultHome(), Origin{Source: SourceDefault}
	}
	file, err := LoadConfig(cfg.Home)
	if err != nil {
		return cfg, fmt.Errorf("resolve settings: %w", err)
	}
	bm, bmPath, bmErr := cloudapi.ReadBasicMemoryConfig(getenv)
	env := Config{CloudHost: getenv(cloudapi.EnvHost), CloudDomain: getenv(cloudapi.EnvDomain), ClientID: getenv(cloudapi.EnvClientID)}

	type layer struct {
		c    Config
		name func(s setting) string
		src  Source
	}
	layers := []layer{
		{in.Flags, func(s setting) string { return in.FlagNames[s.key] }, SourceFlag},
		{env, func(s setting) string { return s.env }, SourceEnv},
		{file, func(setting) string { return filepath.Join(cfg.Home, "config.json") }, SourceConfig},
		{Config{CloudHost: bm.Host, CloudDomain: bm.Domain, ClientID: bm.ClientID}, func(setting) string { return bmPath }, SourceBasicMemory},
		{defaultCloud, func(setting) string { return "" }, SourceDefault},
	}
	// set reports whether layer l sets s.
	set := func(l layer, s setting) bool {
		if l.src == SourceFlag && in.FlagNames[s.key] == "" {
			return false
		}
		if l.src == SourceEnv && s.env == "" {
			return false
		}
		return s.isSet(&l.c)
	}
	hostLayer := len(layers)
	for i, l := range layers {
		if set(l, settings[cloudHostIndex]) {
			hostLayer = i
			break
		}
	}
	// the Basic Memory cloud's host, however it is set, keeps its issuer
	defaultHost := hostLayer < len(layers) && strings.TrimRight(layers[hostLayer].c.CloudHost, "/") == defaultCloud.CloudHost
	for _, s := range settings {
		last := len(layers) - 1
		if (s.key == "cloud_domain" || s.key == "cloud_client_id") && !defaultHost {
			last = min(last, hostLayer)
		}
		for _, l := range layers[:last+1] {
			if set(l, s) {
				s.copy(&cfg, &l.c)
				sources[s.key] = Origin{l.src, l.name(s)}
				break
			}
		}
		if _, ok := sources[s.key]; !ok {
			sources[s.key] = Origin{Source: SourceDefault}
		}
	}
	if cfg.CloudDomain == "" && cfg.CloudHost != "" {
		cfg.CloudDomain, sources["cloud_domain"] = cfg.CloudHost, Origin{SourceDefault, "cloud_host"}
	}
	if cfg.ClientID == "" {
		cfg.ClientID = tenantapi.DefaultClientID
	}
	cfg.CloudHost = strings.TrimRight(cfg.CloudHost, "/")
	cfg.CloudDomain = strings.TrimRight(cfg.CloudDomain, "/")
	cfg = cfg.withDefaults()
	cfg.Sources = sources
	if bmErr != nil {
		cfg.Warnings = append(cfg.Warnings, bmErr.Error()+" (skipped)")
	}
	return cfg, nil
}

// defaultCloud is the default layer's cloud: the Basic Memory cloud.
var defaultCloud = Config{CloudHost: cloudapi.DefaultHost, CloudDomain: cloudapi.DefaultDomain, ClientID: cloudapi.DefaultClientID}

// cloudHostIndex is cloud_host's index in settings.
var cloudHostIndex = func() int {
	for i, s := range settings {
		if s.key == "cloud_host" {
			return i
		}
	}
	panic("no cloud_host setting")
}()

// SaveSetting checks value as `bm-agent config set` does and writes it to
// the config file in home ("" for the default home): for the CLI when no
// daemon runs (`setup --server` before it installs the service).
func SaveSetting(home, key, value string) error {
	if home == "" {
		home = DefaultHome()
	}
	_, _, err := saveSetting(home, key, value)
	return err
}

// saveSetting checks value, sets it in the config file in home and
// returns the setting and the file's config after the change.
func saveSetting(home, key, value string) (setting, Config, error) {
	s, key, ok := lookupSetting(key)
	if !ok {
		return s, Config{}, fmt.Errorf("config set %q: %w: unknown key (one of %s)", key, ipc.ErrInvalid, settingKeys())
	}
	file, err := LoadConfig(home)
	if err != nil {
		return s, file, fmt.Errorf("config set %s: %w", key, err)
	}
	if err := s.parse(&file, strings.TrimSpace(value)); err != nil {
		return s, file, fmt.Errorf("config set %s: %w", key, err)
	}
	if err := file.Save(); err != nil {
		return s, file, fmt.Errorf("config set %s: %w", key, err)
	}
	return s, file, nil
}

// withSource returns a copy of sources with key's origin set to o.
func withSource(sources map[string]Origin, key string, o Origin) map[string]Origin {
	m := maps.Clone(sources)
	if m == nil {
		m = map[string]Origin{}
	}
	m[key] = o
	return m
}

// liveValue is what a change of key sets while the daemon runs, read from
// the config file after it.
func liveValue(key string, file Config) (time.Duration, int) {
	switch key {
	case "interval":
		return time.Duration(file.Interval), 0
	case "debounce":
		return time.Duration(file.Debounce), 0
	case "max_wait":
		return time.Duration(file.MaxWait), 0
	case "versions_days":
		return 0, file.versionsDays()
	case "versions_max_mb":
		return 0, file.VersionsMaxMB
	}
	return 0, 0
}
