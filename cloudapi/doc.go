// Package cloudapi is everything bm-agent needs from the cloud: where the
// cloud is (Config), how to log in to it (OAuth 2.0 authorization code with
// PKCE on a loopback redirect, the device authorization grant with PKCE for
// machines without a browser, and refreshing tokens), where the resulting
// secrets live (Store: the OS keychain, or a 0600 file where there is none)
// and a typed client of the tenant API (Client) whose errors callers can
// test with errors.Is and errors.As.
//
// The wire types of the tenant API live in package tenantapi, which the
// server imports too; this package never logs a token or a secret.
package cloudapi
