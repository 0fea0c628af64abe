package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// ReadTokenFile reads a bearer token from path: the file's content without
// surrounding white space. An empty token is an error; neither error
// quotes the content.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("read token file " + path + ": empty")
	}
	return tok, nil
}

// RequireBearer serves next only to requests whose Authorization header is
// "Bearer " and token (compared in constant time, by digest, so neither
// content nor length leaks); others get 401 with WWW-Authenticate and a
// JSON detail. The token is never logged nor echoed.
func RequireBearer(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"detail":"a valid bearer token is required"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
