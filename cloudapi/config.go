package cloudapi

import (
	"encoding/json"
	"errors"
	"fmt"
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

// LoadConfig resolves the cloud configuration. Each field is taken from the
// first of these that sets it:
//
//  1. the environment: BASIC_MEMORY_CLOUD_HOST, BASIC_MEMORY_CLOUD_DOMAIN,
//     BASIC_MEMORY_CLOUD_CLIENT_ID;
//  2. the Basic Memory CLI's ~/.basic-memory/config.json, keys cloud_host,
//     cloud_domain, cloud_client_id (a missing or unreadable file is skipped);
//  3. agentConfig, the agent's own configuration;
//  4. defaults: ClientID is tenantapi.DefaultClientID, and Domain is Host
//     (bm-server is its own issuer). Host has no default: an empty Host means
//     "not configured".
//
// Trailing slashes are trimmed from Host and Domain. LoadConfig does not
// validate the URLs: call CheckURL.
func LoadConfig(agentConfig Config) Config {
	layers := []Config{
		{Host: os.Getenv(EnvHost), Domain: os.Getenv(EnvDomain), ClientID: os.Getenv(EnvClientID)},
		basicMemoryConfig(),
		agentConfig,
		{ClientID: tenantapi.DefaultClientID},
	}
	var c Config
	for _, l := range layers {
		c.Host = first(c.Host, strings.TrimSpace(l.Host))
		c.Domain = first(c.Domain, strings.TrimSpace(l.Domain))
		c.ClientID = first(c.ClientID, strings.TrimSpace(l.ClientID))
	}
	c.Domain = first(c.Domain, c.Host)
	c.Host = strings.TrimRight(c.Host, "/")
	c.Domain = strings.TrimRight(c.Domain, "/")
	return c
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// basicMemoryConfig reads ~/.basic-memory/config.json; any failure yields
// the zero Config.
func basicMemoryConfig() Config {
	home, err := os.UserHomeDir()
	if err != nil {
		return Config{}
	}
	b, err := os.ReadFile(filepath.Join(home, ".basic-memory", "config.json"))
	if err != nil {
		return Config{}
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}
	}
	return c
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
