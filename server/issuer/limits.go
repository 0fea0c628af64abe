package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/server/limit"
)

// Limits bounds what callers of the issuer's anonymous routes may ask, per
// client address (limit.ClientKey) unless said otherwise. A zero field
// takes its default; a negative rate is no limit.
type Limits struct {
	// DeviceAuthPerMinute and DeviceAuthBurst bound the device
	// authorizations one client starts (defaults 6 a minute, 10 at once).
	DeviceAuthPerMinute float64
	DeviceAuthBurst     int
	// MaxPendingDevices bounds the device codes pending at once, in all
	// (default 10,000).
	MaxPendingDevices int
	// VerifyPerMinute and VerifyBurst bound the user codes one client
	// looks up or submits at the verification page (defaults 10 a
	// minute, 20 at once); CodePerMinute and CodeBurst the submissions
	// for one user code, from anyone (defaults 3 a minute, 6 at once).
	VerifyPerMinute float64
	VerifyBurst     int
	CodePerMinute   float64
	CodeBurst       int
	// LoginPerMinute and LoginBurst bound the sign-in attempts of one
	// client, at the login page and the verification page (defaults 20 a
	// minute, 20 at once).
	LoginPerMinute float64
	LoginBurst     int
	// LoginFreeFailures wrong passwords for one account cost nothing
	// (default 5; a client gets twice as many, over all accounts); each
	// further one makes the account (or client) wait LoginBackoff
	// (default 1 s), doubled per failure up to LoginBackoffMax (default
	// 15 min). A success ends the account's wait; a quiet hour forgets
	// the failures.
	LoginFreeFailures int
	LoginBackoff      time.Duration
	LoginBackoffMax   time.Duration
}

// Defaults of Limits.
const (
	DefaultDeviceAuthPerMinute = 6
	DefaultDeviceAuthBurst     = 10
	DefaultMaxPendingDevices   = 10_000
	DefaultVerifyPerMinute     = 10
	DefaultVerifyBurst         = 20
	DefaultCodePerMinute       = 3
	DefaultCodeBurst           = 6
	DefaultLoginPerMinute      = 20
	DefaultLoginBurst          = 20
	DefaultLoginFreeFailures   = 5
	DefaultLoginBackoff        = time.Second
	DefaultLoginBackoffMax     = 15 * time.Minute
	loginForget                = time.Hour
)

// withDefaults fills l's zero fields.
func (l Limits) withDefaults() Limits {
	rate := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	n := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	rate(&l.DeviceAuthPerMinute, DefaultDeviceAuthPerMinute)
	n(&l.DeviceAuthBurst, DefaultDeviceAuthBurst)
	n(&l.MaxPendingDevices, DefaultMaxPendingDevices)
	rate(&l.VerifyPerMinute, DefaultVerifyPerMinute)
	n(&l.VerifyBurst, DefaultVerifyBurst)
	rate(&l.CodePerMinute, DefaultCodePerMinute)
	n(&l.CodeBurst, DefaultCodeBurst)
	rate(&l.LoginPerMinute, DefaultLoginPerMinute)
	n(&l.LoginBurst, DefaultLoginBurst)
	if l.LoginFreeFailures == 0 {
		l.LoginFreeFailures = DefaultLoginFreeFailures
	}
	if l.LoginBackoff == 0 {
		l.LoginBackoff = DefaultLoginBackoff
	}
	if l.LoginBackoffMax == 0 {
		l.LoginBackoffMax = DefaultLoginBackoffMax
	}
	return l
}

// limiters are an Issuer's live limits.
type limiters struct {
	deviceAuth, verify, code, login limit.Limiter
	accountFail, clientFail         limit.Failures
	maxPending                      int
}

// Names of the issuer's limits in a limit.Backend (a shared one keeps
// them under these names: keep them stable).
const (
	limitDeviceAuth  = "issuer.device_auth"
	limitVerify      = "issuer.verify"
	limitCode        = "issuer.user_code"
	limitLogin       = "issuer.login"
	limitAccountFail = "issuer.login_account_failures"
	limitClientFail  = "issuer.login_client_failures"
)

// newLimiters makes the limits l of backend b (nil: this process's
// memory).
func newLimiters(l Limits, b limit.Backend) *limiters {
	l = l.withDefaults()
	if b == nil {
		b = limit.Local{}
	}
	free := max(l.LoginFreeFailures, 0)
	backoff := func(free int) limit.BackoffPolicy {
		return limit.BackoffPolicy{Free: free, Base: l.LoginBackoff, Max: l.LoginBackoffMax, Forget: loginForget}
	}
	return &limiters{
		deviceAuth:  b.Rate(limitDeviceAuth, limit.Rate{PerMinute: l.DeviceAuthPerMinute, Burst: l.DeviceAuthBurst}),
		verify:      b.Rate(limitVerify, limit.Rate{PerMinute: l.VerifyPerMinute, Burst: l.VerifyBurst}),
		code:        b.Rate(limitCode, limit.Rate{PerMinute: l.CodePerMinute, Burst: l.CodeBurst}),
		login:       b.Rate(limitLogin, limit.Rate{PerMinute: l.LoginPerMinute, Burst: l.LoginBurst}),
		accountFail: b.Backoff(limitAccountFail, backoff(free)),
		clientFail:  b.Backoff(limitClientFail, backoff(2*free)),
		maxPending:  l.MaxPendingDevices,
	}
}

// LimitedError is a request refused by a rate limit or a backoff: the
// caller may try again after Wait.
type LimitedError struct {
	What string // what was limited: "sign-in", "device authorization", ...
	Wait time.Duration
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("%s: too many attempts; retry in %s", e.What, e.Wait.Round(time.Second))
}

// ErrBadCredentials is a sign-in with a wrong email or password.
var ErrBadCredentials = errors.New("wrong email or password")

// limited is the *LimitedError of what with wait (at least a second).
func limited(what string, wait time.Duration) error {
	return &LimitedError{What: what, Wait: max(wait, time.Second)}
}

// accountKey is the key of an email in the sign-in limits.
func accountKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// signIn checks email and password within the sign-in limits of the
// client and of the account, and returns the account's subject. A limit
// refuses before the password is checked (a *LimitedError); a wrong
// password is ErrBadCredentials and counts against both.
func (i *Issuer) signIn(ctx context.Context, r *http.Request, email, password string) (string, error) {
	client, acct := limit.RequestKey(r), accountKey(email)
	if ok, wait := i.lim.login.Allow(ctx, client); !ok {
		return "", fmt.Errorf("sign in: %w", limited("sign-in", wait))
	}
	if w := max(i.lim.clientFail.Wait(ctx, client), i.lim.accountFail.Wait(ctx, acct)); w > 0 {
		return "", fmt.Errorf("sign in: %w", limited("sign-in", w))
	}
	subject, err := i.accounts.Authenticate(ctx, email, password)
	if err != nil || subject == "" {
		i.lim.accountFail.Fail(ctx, acct)
		i.lim.clientFail.Fail(ctx, client)
		return "", fmt.Errorf("sign in: %w", ErrBadCredentials)
	}
	i.lim.accountFail.Reset(ctx, acct) // not the client's: an account of its own must not clear a guesser's record
	return subject, nil
}

// retryMessage is what a page says of a limit's wait.
func retryMessage(wait time.Duration) string {
	s := limit.RetryAfter(wait)
	if s == "1" {
		return "Too many attempts. Please wait a second and try again."
	}
	return "Too many attempts. Please wait " + s + " seconds and try again."
}
