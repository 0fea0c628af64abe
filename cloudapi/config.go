package cloudapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Environment variables and config.json keys shared with the Basic Memory
// CLI, so that one setting points both at the same cloud.
const (
	EnvHost     = "BASIC_MEMORY_CLOUD_HOST"
	EnvDomain   = "BASIC_MEMORY_CLOUD_DOMAIN"
	EnvClientID = "BASIC_MEMORY_CLOUD_CLIENT_ID"
	// EnvConfigDir is where Basic Memory keeps its config.json when set
	// (its default is ~/.basic-memory).
	EnvConfigDir = "BASIC_MEMORY_CONFIG_DIR"
)

// The Basic Memory cloud, with the Basic Memory CLI's own defaults (its
// config.py): what bm-agent talks to when nothing names another server, so
// that a Basic Memory user logs in with no flag.
const (
	DefaultHost     = "https://api.basicmemory.cloud"
	DefaultDomain   = "https://eloquent-lotus-05.authkit.app"
	DefaultClientID = "client_01K6KWQPW6J1M8VV7R3TZP5A6M"
)

// Config says where the cloud is.
type Config struct {
	// Host is the tenant API base URL, e.g. https://api.example.com.
	Host string `json:"cloud_host,omitempty"`
	// Domain is the OAuth issuer base URL (its discovery document is at
	// {Domain}/.well-known/openid-configuration).
	Domain string `json:"cloud_domain,omitempty"`
	// ClientID is the public OAuth client id.
	ClientID string `json:"cloud_client_id,omitempty"`
}

// LoadConfig completes a resolved cloud configuration with its defaults:
// ClientID is tenantapi.DefaultClientID and Domain is Host (bm-server is
// its own issuer); trailing slashes are trimmed from Host and Domain. An
// empty Host means "not configured" (the settings resolver never leaves it
// empty: its default is [DefaultHost]).
//
// It reads nothing: where each setting comes from (flags, the environment,
// the agent's config, Basic Memory's config.json, see
// [ReadBasicMemoryConfig]) is decided in one place, the agent's settings
// resolver. LoadConfig does not validate the URLs: call CheckURL.
func LoadConfig(c Config) Config {
	c.Host = strings.TrimRight(strings.TrimSpace(c.Host), "/")
	c.Domain = strings.TrimRight(strings.TrimSpace(c.Domain), "/")
	c.ClientID = strings.TrimSpace(c.ClientID)
	if c.Domain == "" {
		c.Domain = c.Host
	}
	if c.ClientID == "" {
		c.ClientID = tenantapi.DefaultClientID
	}
	return c
}

// BasicMemoryConfigPaths lists where the Basic Memory CLI may keep its
// config.json, in the order they are tried: $BASIC_MEMORY_CONFIG_DIR
// alone when it is set (Basic Memory then uses nothing else); otherwise
// ~/.basic-memory, then $XDG_CONFIG_HOME/basic-memory (~/.config when
// XDG_CONFIG_HOME is unset). getenv is os.Getenv in production.
func BasicMemoryConfigPaths(getenv func(string) string) []string {
	if d := getenv(EnvConfigDir); d != "" {
		return []string{filepath.Join(d, "config.json")}
	}
	var paths []string
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home != "" {
		paths = append(paths, filepath.Join(home, ".basic-memory", "config.json"))
	}
	xdg := getenv("XDG_CONFIG_HOME")
	if xdg == "" && home != "" {
		xdg = filepath.Join(home, ".config")
	}
	if xdg != "" {
		paths = append(paths, filepath.Join(xdg, "basic-memory", "config.json"))
	}
	return paths
}

// ReadBasicMemoryConfig reads the cloud settings (cloud_host,
// cloud_domain, cloud_client_id) of the first Basic Memory config.json of
// [BasicMemoryConfigPaths] that exists, and returns its path. None is
// the zero Config, "" and nil; a file that cannot be read or parsed is an
// error naming it (the caller decides whether to go on without it).
func ReadBasicMemoryConfig(getenv func(string) string) (Config, string, error) {
	for _, p := range BasicMemoryConfigPaths(getenv) {
		b, err := os.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return Config{}, p, fmt.Errorf("read Basic Memory config: %w", err)
		}
		var c Config
		if err := json.Unmarshal(b, &c); err != nil {
			return Config{}, p, fmt.Errorf("read Basic Memory config %s: %w", p, err)
		}
		return c, p, nil
	}
	return Config{}, "", nil
}

// CheckURL accepts an absolute http(s) URL with a host and no user info, and
// requires https unless the host is loopback (localhost, 127.0.0.0/8, ::1).
func CheckURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return errors.New("check url: not a valid URL") // url.Error would quote u
	}
	if p.Host == "" || p.Hostname() == "" {
		return fmt.Errorf("check url %q: no host", p.Redacted())
	}
	if p.User != nil {
		return fmt.Errorf("check url: user info is not allowed in %s://%s", p.Scheme, p.Host)
	}
	switch p.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(p.Hostname()) {
			return nil
		}
		return fmt.Errorf("check url %q: https is required for a non-loopback host", p.Redacted())
	default:
		return fmt.Errorf("check url %q: scheme must be https", p.Redacted())
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
