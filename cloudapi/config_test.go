package cloudapi

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

func TestLoadConfigPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		file  string // ~/.basic-memory/config.json, "" for none
		agent Config
		want  Config
	}{
		{
			name: "defaults only",
			want: Config{ClientID: tenantapi.DefaultClientID},
		},
		{
			name:  "agent config, domain defaults to host",
			agent: Config{Host: "https://agent.example/"},
			want:  Config{Host: "https://agent.example", Domain: "https://agent.example", ClientID: tenantapi.DefaultClientID},
		},
		{
			name:  "file beats agent config",
			file:  `{"cloud_host": "https://file.example", "cloud_client_id": "file-client", "other": 1}`,
			agent: Config{Host: "https://agent.example", Domain: "https://auth.agent.example", ClientID: "agent-client"},
			want:  Config{Host: "https://file.example", Domain: "https://auth.agent.example", ClientID: "file-client"},
		},
		{
			name: "env beats file",
			env: map[string]string{
				EnvHost:     "https://env.example",
				EnvDomain:   "https://auth.env.example",
				EnvClientID: "env-client",
			},
			file:  `{"cloud_host": "https://file.example", "cloud_domain": "https://auth.file.example", "cloud_client_id": "file-client"}`,
			agent: Config{Host: "https://agent.example"},
			want:  Config{Host: "https://env.example", Domain: "https://auth.env.example", ClientID: "env-client"},
		},
		{
			name:  "per field: env host, file domain, agent client id",
			env:   map[string]string{EnvHost: "https://env.example"},
			file:  `{"cloud_domain": "https://auth.file.example"}`,
			agent: Config{Host: "https://agent.example", ClientID: "agent-client"},
			want:  Config{Host: "https://env.example", Domain: "https://auth.file.example", ClientID: "agent-client"},
		},
		{
			name:  "malformed file is skipped",
			file:  `{not json`,
			agent: Config{Host: "http://127.0.0.1:8080"},
			want:  Config{Host: "http://127.0.0.1:8080", Domain: "http://127.0.0.1:8080", ClientID: tenantapi.DefaultClientID},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			t.Setenv("USERPROFILE", home)
			for _, k := range []string{EnvHost, EnvDomain, EnvClientID} {
				t.Setenv(k, tt.env[k])
			}
			if tt.file != "" {
				dir := filepath.Join(home, ".basic-memory")
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := LoadConfig(tt.agent); got != tt.want {
				t.Errorf("LoadConfig() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://api.example.com", true},
		{"https://api.example.com:8443/base", true},
		{"http://127.0.0.1:8080", true},
		{"http://127.1.2.3", true},
		{"http://[::1]:9000", true},
		{"http://localhost:3000", true},
		{"http://LOCALHOST", true},
		{"http://api.example.com", false},
		{"http://10.0.0.1", false},
		{"http://localhost.evil.example", false},
		{"ftp://api.example.com", false},
		{"api.example.com", false},
		{"https://", false},
		{"https://user:pass@api.example.com", false},
		{"://bad", false},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}
